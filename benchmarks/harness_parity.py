"""Evaluation harnesses nobody here wrote, pointed at `tts serve` instead of vLLM's own server:
do they score the same? lm-evaluation-harness (`local-chat-completions` on a generate_until
task, `local-completions` on a multiple-choice task scored by loglikelihood) and inspect-ai
(`openai-api`, greedy; and `--num-choices 2` sampled at T=0.7, since vLLM's server refuses two
greedy choices) run against

  1. vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`) on the embedded model,
  2. `tts serve --strategy none` (the pass-through) on the same model, engine seed and slices,
  3. the same `tts serve` with a voting strategy (`self_consistency/MODEL`, n=4), where
     lm-eval's and inspect's temperature 0 is sampled at the server's temperature (docs/serve.md),

and the scores are printed side by side. Needs the `harness` extra (`pip install -e
".[harness]"`) and the embedded model (`make model`); the tasks are written as local files from
../shared/data (GSM8K), since no dataset hub is reached: a generate_until GSM8K slice and a
four-way multiple choice built from the same problems (the gold answer among three numeric
distractors). One heavy run on a CPU: about half an hour at the defaults.

    python benchmarks/harness_parity.py --limit 20 --mc-limit 25
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
BIN = Path(sys.executable).parent
SAMPLED = "inspect-ai gsm8k --num-choices 2, T=0.7 (accuracy)"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], log: Path, port: int, timeout: float = 900) -> Iterator[str]:
    """Start a server command on 127.0.0.1:port, wait for /health, yield its /v1 URL, stop it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
               TOKENIZERS_PARALLELISM="false")
    env.pop("TTS_API_KEY", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{cmd[:4]} did not come up; log tail:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the tasks, as local files ----------------------------------------------------------------
def gold(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


def write_tasks(folder: Path, limit: int, mc_limit: int) -> None:
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[: max(limit, mc_limit)]]
    (folder / "gsm8k_slice.jsonl").write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"],
                                                                   "target": gold(r["answer"])}) + "\n"
                                                       for r in rows[:limit]))
    mc = []
    for i, r in enumerate(rows[:mc_limit]):
        g = int(float(gold(r["answer"])))
        wrong = [g + 1 + i % 3, g * 2 if g else 2, max(g - 7, 0) if g > 7 else g + 11]
        choices = [str(c) for c in dict.fromkeys(wrong) if c != g][:3]
        while len(choices) < 3:
            choices.append(str(g + 100 + len(choices)))
        label = random.Random(i).randrange(4)
        choices.insert(label, str(g))
        mc.append({"question": r["question"], "choices": choices, "label": label})
    (folder / "gsm8k_mc.jsonl").write_text("".join(json.dumps(m) + "\n" for m in mc))
    (folder / "gsm8k_local.yaml").write_text(f"""task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'gsm8k_slice.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  max_gen_toks: 256
filter_list:
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
""")
    (folder / "gsm8k_mc.yaml").write_text(f"""task: gsm8k_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'gsm8k_mc.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""")
    (folder / "inspect_gsm8k.py").write_text(f'''from inspect_ai import Task, task
from inspect_ai.dataset import FieldSpec, json_dataset
from inspect_ai.scorer import match
from inspect_ai.solver import generate, prompt_template


@task
def gsm8k_local():
    return Task(dataset=json_dataset("{folder / 'gsm8k_slice.jsonl'}", FieldSpec(input="question", target="target")),
                solver=[prompt_template("{{prompt}}\\nSolve it step by step and end with: The answer is N."), generate()],
                scorer=match(numeric=True))
''')


# -- the harnesses ------------------------------------------------------------------------------
def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({rc}); log tail:\n{log.read_text(errors='replace')[-3000:]}")


def slug(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)


def lm_eval(kind: str, url: str, model: str, tokenizer: str, task: str, limit: int, folder: Path, tag: str) -> float:
    tag = slug(tag)
    out = folder / f"lm_eval_{tag}_{task}"
    endpoint = "chat/completions" if kind == "local-chat-completions" else "completions"
    args = f"model={model},base_url={url}/{endpoint},num_concurrent=1,max_retries=1,timeout=3600"
    if kind == "local-completions":
        args += f",tokenizer={tokenizer},tokenizer_backend=huggingface,tokenized_requests=True"
    cmd = [str(BIN / "lm_eval"), "--model", kind, "--model_args", args, "--tasks", task, "--include_path", str(folder),
           "--limit", str(limit), "--seed", "0", "--output_path", str(out), "--log_samples"]
    if kind == "local-chat-completions":
        cmd.append("--apply_chat_template")
    run(cmd, folder / f"lm_eval_{tag}_{task}.log")
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"][task]
    key = "exact_match,flexible-extract" if task == "gsm8k_local" else "acc,none"
    return float(results[key])


def inspect(url: str, model: str, limit: int, folder: Path, tag: str, choices: int, temperature: float) -> float:
    tag = slug(f"{tag} {choices} {temperature}")
    logs = folder / f"inspect_{tag}"
    run([str(BIN / "inspect"), "eval", "inspect_gsm8k.py", "--model", f"openai-api/local/{model}",
         "--model-base-url", url, "--num-choices", str(choices), "--temperature", str(temperature), "--max-tokens",
         "256", "--limit", str(limit), "--seed", "0", "--log-dir", str(logs), "--log-format", "json", "--display",
         "none"], folder / f"inspect_{tag}.log", env={"LOCAL_API_KEY": "none"}, cwd=folder)  # (a relative task file)
    log = json.loads(next(logs.glob("*.json")).read_text())
    if "results" not in log:  # the eval failed: its error, not a score
        raise SystemExit(f"inspect-ai failed against {url}: {str(log.get('error', {}).get('message'))[-400:]}")
    return float(log["results"]["scores"][0]["metrics"]["accuracy"]["value"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="an embedded model (`tts models list`)")
    ap.add_argument("--limit", type=int, default=20, help="GSM8K problems for the generate_until tasks")
    ap.add_argument("--mc-limit", type=int, default=25, help="problems of the multiple-choice task")
    ap.add_argument("--voting-n", type=int, default=4)
    ap.add_argument("--keep", help="folder for the logs and results (default: a temporary one)")
    ap.add_argument("--skip-vllm", action="store_true", help="tts serve only (a quick check of the harnesses)")
    args = ap.parse_args()
    from tts.models import resolve_model
    from tts.serve import served_name

    path = resolve_model(args.model)  # the prepared folder (TTSError when it is not: run `make model`)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="harness-parity-"))
    folder.mkdir(parents=True, exist_ok=True)
    write_tasks(folder, args.limit, args.mc_limit)
    name = served_name(args.model)
    common = ["--served-model-name", name, "--seed", "0", "--max-model-len", "4096"]
    scores: dict[str, dict[str, float]] = {}
    timing: dict[str, float] = {}

    def evaluate(tag: str, url: str, model: str, mc: bool = True) -> None:
        start = time.time()
        got = scores.setdefault(tag, {})
        got["lm-eval chat gsm8k (generate_until, exact_match)"] = lm_eval(
            "local-chat-completions", url, model, path, "gsm8k_local", args.limit, folder, tag)
        if mc:
            got["lm-eval completions gsm8k-mc (loglikelihood, acc)"] = lm_eval(
                "local-completions", url, model, path, "gsm8k_mc", args.mc_limit, folder, tag)
        got["inspect-ai gsm8k greedy (accuracy)"] = inspect(url, model, args.limit, folder, tag, 1, 0.0)
        # vLLM's server refuses n > 1 at temperature 0 ("n must be 1 when using greedy sampling"): two
        # choices are sampled, each server seeding its own way (vLLM per request, tts serve its engine),
        # so this row agrees in distribution, not sample for sample
        got[SAMPLED] = inspect(url, model, args.limit, folder, tag, 2, 0.7)
        timing[tag] = time.time() - start
        print(f"{tag}: {got} ({timing[tag]:.0f} s)", flush=True)

    port = free_port()
    if not args.skip_vllm:
        with server([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host", "127.0.0.1",
                     "--port", str(port), "--enforce-eager", *common], folder / "vllm_server.log", port) as url:
            evaluate("vLLM server", url, name)
    port = free_port()
    with server([str(BIN / "tts"), "serve", "--model", args.model, "--strategy", "none", "--port", str(port),
                 "-n", str(args.voting_n), *common], folder / "tts_serve.log", port) as url:
        evaluate("tts serve none", url, name)
        evaluate(f"tts serve self_consistency n={args.voting_n}", url, f"self_consistency/{name}", mc=False)

    rows = list(next(iter(scores.values())))
    tags = list(scores)
    width = max(len(r) for r in rows)
    print(f"\nmodel {name}, engine seed 0, CPU; lm-eval {args.limit} + {args.mc_limit} problems, inspect-ai {args.limit}")
    print(" " * width + " | " + " | ".join(f"{t:>30}" for t in tags))
    for r in rows:
        cells = [f"{scores[t][r]:30.3f}" if r in scores[t] else f"{'(not a chat task)':>30}" for t in tags]
        print(f"{r:<{width}} | " + " | ".join(cells))
    print(" " * width + " | " + " | ".join(f"{timing[t]:29.0f}s" for t in tags))
    print(f"logs and samples: {folder}")
    same = all(scores.get("vLLM server", scores["tts serve none"])[r] == scores["tts serve none"][r]
               for r in rows if r != SAMPLED)
    print("pass-through scores equal vLLM's (the deterministic rows): " + ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
