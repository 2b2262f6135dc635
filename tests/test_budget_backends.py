"""The budget holds on every backend, by construction: the worst case the accountant reserves
before a call (n x (prompt + max_tokens)) is what the backend can return for it. Extends
test_core's property test (scripted generator) to the replay backend with recorded samples
longer than max_tokens, the OpenAI backend against a FAKE server that reports no usage, and the
in-process vLLM engine (engine-marked).

Failed before the fix: replay served recorded samples whole whatever the request's max_tokens
(one math100 problem was charged 2797 completion tokens under a 1500 cap), and the OpenAI
backend's byte-count estimate could exceed max_tokens.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from servers import FakeOpenAIServer  # noqa: E402

import tts  # noqa: E402
from strategies import BestOfN, FirstFinish, SelfConsistency  # noqa: E402
from tts.backends.openai import OpenAIGenerator  # noqa: E402
from tts.backends.replay import ReplayGenerator  # noqa: E402
from tts.bank import BankRecord, BankWriter, RecordedTrace  # noqa: E402
from tts.types import DEFAULT_SYSTEM_PROMPT, Budget, Problem  # noqa: E402
from verifiers import Confidence  # noqa: E402

P = Problem("p1", "What is one half?", answer="1/2")
CAPS = ["completion_tokens", "total_tokens", "calls", "flops"]


def budget_for(cap: str, value: int) -> Budget:
    return Budget(**{cap: value % 5 if cap == "calls" else value * (20 if cap == "flops" else 1)})


def strategy(which: int, n: int):
    # generate-based with and without a verifier, and stream-based
    return [lambda: BestOfN(n), lambda: SelfConsistency(n), lambda: FirstFinish(n, k=1)][which]()


def recorded(length: int, i: int, char_ends: bool) -> RecordedTrace:
    text = " ".join(f"w{j}" for j in range(length)) + " \\boxed{1}" if length else ""
    ends = np.linspace(1, len(text), length).astype(np.int32) if char_ends and length else None
    return RecordedTrace(text=text, num_tokens=length, answer="1" if length else None, score=0.1 * i,
                         logprobs=np.full(length, -0.3, np.float32), top_logprobs=np.full((length, 1), -0.3, np.float32),
                         char_ends=ends)


def imported_bank(folder: Path, lengths: list[int]) -> Path:
    """One problem, 12 samples of the given (cycled) lengths; max_tokens not recorded (as an import)."""
    w = BankWriter(folder, {"model": "m", "num_params": 10, "task": "t", "logprobs": 1, "seed": 0,
                            "sampling": {"temperature": None, "top_p": None, "max_tokens": None, "stop": []},
                            "system_prompt": DEFAULT_SYSTEM_PROMPT})
    samples = [recorded(lengths[i % len(lengths)], i, char_ends=i % 2 == 0) for i in range(12)]
    w.append(BankRecord(P.id, P.question, samples, system=DEFAULT_SYSTEM_PROMPT, prompt_tokens=9))
    return folder


def check(r, budget: Budget, max_tokens: int) -> None:
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)
    assert all(t.num_tokens <= max_tokens for t in r.traces), [t.num_tokens for t in r.traces]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), n=st.integers(1, 12), max_tokens=st.integers(1, 30),
       lengths=st.lists(st.integers(0, 80), min_size=1, max_size=5), cap=st.sampled_from(CAPS),
       value=st.integers(0, 400))
def test_replay_never_exceeds_a_budget_with_samples_longer_than_max_tokens(which, n, max_tokens, lengths, cap, value):
    budget = budget_for(cap, value)
    with tempfile.TemporaryDirectory() as d:
        gen = ReplayGenerator(imported_bank(Path(d) / "bank", lengths), seed=value)
        r = tts.solve_sync(P, strategy(which, n), generator=gen, verifier=Confidence(), budget=budget,
                           sampling=tts.Sampling(temperature=0.7, max_tokens=max_tokens))
    check(r, budget, max_tokens)
    for t in r.traces:  # a cut sample is what a live model returns at that max_tokens
        if t.finish_reason == "length":
            assert t.num_tokens == max_tokens


def test_replay_cuts_at_max_tokens_faithfully(tmp_path):
    gen = ReplayGenerator(imported_bank(tmp_path / "bank", [50]), shuffle=False)
    r = tts.solve_sync(P, SelfConsistency(2), generator=gen, sampling=tts.Sampling(max_tokens=10))
    with_ends, without = r.traces
    assert with_ends.text == " ".join(f"w{j}" for j in range(50))[: len(with_ends.text)]
    assert (with_ends.num_tokens, with_ends.finish_reason, with_ends.answer, with_ends.score) == (10, "length", None, None)
    assert 0 < len(without.text) < 100
    gen.reset()
    (t,), u = tts.runner.run_sync(gen.generate(tts.Context(P, gen, tts.Accountant()).request(max_tokens=7, logprobs=1)))
    assert len(t.logprobs) == len(t.top_logprobs) == t.num_tokens == u.completion_tokens == 7
    # the bank's own default max_tokens (its longest sample) serves samples whole
    assert gen.bank.sampling["max_tokens"] == 50
    whole = tts.solve_sync(P, SelfConsistency(2), generator=ReplayGenerator(gen.bank, shuffle=False),
                           sampling=gen.bank.sampling_defaults())
    assert [t.finish_reason for t in whole.traces] == ["stop", "stop"] and whole.answer == "1"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(1, 2), n=st.integers(1, 6), max_tokens=st.integers(1, 30), length=st.integers(0, 80),
       cap=st.sampled_from(CAPS), value=st.integers(0, 400))
def test_openai_never_exceeds_a_budget_when_the_server_reports_no_usage(which, n, max_tokens, length, cap, value):
    budget = budget_for(cap, value)
    with FakeOpenAIServer("ok", text=" ".join(["word"] * length) + " \\boxed{1}") as s:
        s.report_usage = False
        gen = OpenAIGenerator("fake", s.url, vllm=False, num_params=10, retries=0, timeout=10)
        r = tts.solve_sync(P, strategy(which, n), generator=gen, budget=budget,
                           sampling=tts.Sampling(max_tokens=max_tokens))
        tts.runner.run_sync(gen.close())
    check(r, budget, max_tokens)


@pytest.mark.engine
async def test_vllm_never_exceeds_a_budget(vllm_generator):
    """The in-process engine over seeded random cases (a hypothesis run would restart nothing
    but cost minutes of engine time), including max_tokens far above the model's length."""
    rng = random.Random(0)
    for _ in range(8):
        which, n, cap, value = rng.randrange(3), rng.randint(1, 6), rng.choice(CAPS), rng.randint(0, 300)
        max_tokens = rng.choice([rng.randint(1, 24), 100_000])  # 100k: clipped to the model's 2048
        budget = budget_for(cap, value)
        if max_tokens > 2048:
            budget = Budget(completion_tokens=200_000)
            n = 1
        r = await tts.solve(P, strategy(which, n), generator=vllm_generator, verifier=Confidence(), budget=budget,
                            sampling=tts.Sampling(max_tokens=max_tokens))
        check(r, budget, min(max_tokens, 2048))
