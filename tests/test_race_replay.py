"""First-finish on a replay computes its race (`Streams.race` over `Generator.stream_plan`) instead
of streaming every token: the same answers, traces, charges and stopped_by as the streamed race,
which `plans_streams = False` on the generator forces. The bank mixes lengths (ties, empty
samples, samples cut at max_tokens, recorded "length" cuts), recorded and extracted answers,
token offsets or none, and one problem with fewer samples than n (a stream that fails: the
problem fails with the bank's error, planned or streamed alike)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tts
from strategies import FirstFinish
from tts.backends.replay import ReplayGenerator
from tts.bank import Bank, BankRecord, BankWriter, RecordedTrace
from tts.errors import TTSError
from tts.types import DEFAULT_SYSTEM_PROMPT, Budget, Problem

MANIFEST = {"model": "m", "num_params": 1000, "task": "t", "logprobs": None, "seed": 0,
            "sampling": {"temperature": 0.7, "top_p": 1.0, "max_tokens": None, "stop": []},
            "system_prompt": DEFAULT_SYSTEM_PROMPT}
LENGTHS = [0, 3, 4, 4, 5, 8, 8, 9, 13, 16, 16, 21, 30, 47]  # ties, chunk edges, one empty


def bank(path) -> Bank:
    rng = np.random.default_rng(0)
    w = BankWriter(path, MANIFEST)
    for key, lengths in (("a", LENGTHS), ("b", LENGTHS[::-1]), ("few", [6, 2, 9, 4, 11])):
        samples = []
        for j, t in enumerate(lengths):
            text = " ".join(["w"] * max(t - 1, 0) + [f"\\boxed{{{j % 3}}}"]) if t else ""
            samples.append(RecordedTrace(
                text=text, num_tokens=t, finish_reason="length" if j % 5 == 4 else "stop",
                answer=str(j % 3) if j % 2 else None,  # else extracted from the (possibly cut) text
                token_ids=rng.integers(0, 1000, t).astype(np.int32),
                char_ends=np.linspace(1, len(text), t).astype(np.int32) if j % 3 else None))
        w.append(BankRecord(key, f"Question {key}?", samples, system=DEFAULT_SYSTEM_PROMPT, gold="1",
                            prompt_tokens=7))
    return Bank(path)


BUDGETS = [None, Budget(completion_tokens=40), Budget(completion_tokens=200), Budget(total_tokens=90),
           Budget(calls=7), Budget(flops=2_000_000)]


def outcome(r: tts.Result) -> tuple:
    usage = dataclasses.replace(r.usage, wall_seconds=0.0)
    return r.answer, r.traces, usage, r.stopped_by, r.telemetry


async def both(b: Bank, key: str, n: int, k: int, budget, seed: int, chunk: int, max_tokens: int):
    problem = Problem(key, f"Question {key}?", answer="1")
    out = []
    for planned in (True, False):
        gen = ReplayGenerator(b, seed=seed, stream_chunk=chunk)
        if not planned:
            gen.plans_streams = False  # the streamed race, token chunk by token chunk
        try:
            r = await tts.solve(problem, FirstFinish(n, k), generator=gen, budget=budget,
                                sampling=tts.Sampling(temperature=0.7, max_tokens=max_tokens))
        except TTSError as e:  # a stream failed: so does the problem
            out.append((("failed", str(e)), gen.served(key)))
            continue
        out.append((outcome(r), gen.served(key)))
    return out


@pytest.mark.parametrize("chunk", [1, 4, 7])
async def test_planned_first_finish_equals_the_streamed_race(tmp_path, chunk):
    b = bank(tmp_path / "bank")
    seen = set()  # which branches the grid exercised
    for key, ns in (("a", (1, 3, 8, 14)), ("b", (2, 6, 14)), ("few", (4, 7))):
        for n in ns:
            for k in sorted({1, min(2, n), n // 2 or 1, n}):
                for budget in BUDGETS:
                    for seed in (0, 1):
                        max_tokens = (12, 20, 64)[(n + k + seed) % 3]
                        planned, streamed = await both(b, key, n, k, budget, seed, chunk, max_tokens)
                        assert planned == streamed, (key, n, k, budget, seed, max_tokens)
                        if planned[0][0] == "failed":
                            assert "has 5 samples of problem 'few'" in planned[0][1] and key == "few" and n > 5
                            seen.add("failed")
                            continue
                        (answer, traces, usage, stopped_by, tel), served = planned
                        seen |= {f for f, on in (
                            ("refused", stopped_by == "budget"),
                            ("cut", tel["cut"]), ("stopped", tel["stopped"]), ("fallback", tel["fallback"]),
                            ("k>1", len(tel["finish_order"]) > 1)) if on}
    assert seen == {"refused", "failed", "cut", "stopped", "fallback", "k>1"}
