"""First-finish, DeepConf, ESC, adaptive-consistency and certainty probing on the FAKE scripted
generator (known outcomes: which traces stop, when sampling stops, what stopped traces cost).
The same strategies on the real vLLM engine are in test_early_stop_engine.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tts
from scripted import ScriptedGenerator
from strategies import ESC, AdaptiveConsistency, CertaintyProbe, DeepConf, FirstFinish
from strategies.adaptive_stop import dirichlet_stop_probability
from tts.answers.voting import beta_stop_probability
from tts.types import GenRequest, Problem, Trace, Usage

P = Problem("p", "What is 6 * 7?", answer="42")


def words(k: int, answer: str | None) -> str:
    """k scripted tokens (one per word), the last one boxing `answer`."""
    body = ["w"] * (k - 1)
    return " ".join(body + [f"\\boxed{{{answer}}}" if answer is not None else "end"])


def charged_equals_delivered(r: tts.Result) -> None:
    """Every stream is charged exactly the tokens it delivered, stopped ones included."""
    assert r.usage.completion_tokens == sum(t.num_tokens for t in r.traces)


# -- first finish ------------------------------------------------------------------------------
async def test_first_finish_returns_the_first_trace_and_stops_the_rest():
    gen = ScriptedGenerator([words(10, "1"), words(3, "2"), words(8, "3"), words(20, "4")])
    r = await tts.solve(P, FirstFinish(4), generator=gen)
    assert r.answer == "2"
    assert r.telemetry["finish_order"] == [1] and r.telemetry["stopped"] == 3
    stopped = [t for i, t in enumerate(r.traces) if i != 1]
    assert all(t.finish_reason == "abort" and t.num_tokens <= 4 for t in stopped)  # lockstep: cut at ~3
    charged_equals_delivered(r)
    assert r.usage.completion_tokens <= 3 + 3 * 4  # far below the 41 a full run costs
    assert r.usage.generator_calls == 4


async def test_first_finish_k_votes_over_the_first_k():
    gen = ScriptedGenerator([words(5, "7"), words(2, "9"), words(4, "7"), words(30, "9"), words(30, "9")])
    r = await tts.solve(P, FirstFinish(5, k=3), generator=gen)
    assert r.telemetry["finish_order"] == [1, 2, 0]
    assert r.answer == "7"  # 7 twice among the first three, though 9 is the overall majority
    charged_equals_delivered(r)


async def test_first_finish_does_not_count_a_trace_cut_at_max_tokens():
    """The paper's "finished" is an end of sequence. By hand, max_tokens=6: trace 0 boxes 9 and
    is cut at its 6th token (finish "length"), trace 1 ends on its 6th token with 3 (finish
    "stop"), trace 2 is cut at 6 too. All reach token 6 in the same step, trace 0 first: the first
    trace to *finish* is trace 1, answer 3. Failed before the fix (answered 9)."""
    cut = "\\boxed{9} " + " ".join(["w"] * 9)
    gen = ScriptedGenerator([cut, words(6, "3"), words(20, "4")])
    r = await tts.solve(P, FirstFinish(3), generator=gen, sampling=tts.Sampling(max_tokens=6))
    assert r.answer == "3" and r.telemetry["finish_order"] == [1] and r.telemetry["cut"][0] == 0
    assert r.telemetry["fallback"] is None


async def test_first_finish_falls_back_when_no_trace_ends():
    """Every trace cut at max_tokens=4: none finished, so the answer is the majority over the
    cut traces (7 boxed by two of three, "w w w w" boxes nothing) and telemetry says so."""
    seven = "\\boxed{7} w w w w w"
    gen = ScriptedGenerator([seven, words(9, "1"), seven])
    r = await tts.solve(P, FirstFinish(3), generator=gen, sampling=tts.Sampling(max_tokens=4))
    assert r.answer == "7" and r.telemetry["finish_order"] == [] and sorted(r.telemetry["cut"]) == [0, 1, 2]
    assert "max_tokens" in r.telemetry["fallback"]


def test_first_finish_rejects_k_above_n():
    with pytest.raises(ValueError, match="k"):
        FirstFinish(2, k=3)


# -- DeepConf ----------------------------------------------------------------------------------
def reference_threshold(top_rows: list[list[list[float]]], window: int, percentile: float) -> float:
    """facebookresearch/deepconf helper.py compute_confidence + compute_least_grouped, then
    deepconf-online.py's np.percentile, written out again (without its rounding)."""
    mins = []
    for rows in top_rows:
        confs = [-float(np.mean(row)) for row in rows]
        if len(confs) < window:
            groups = [sum(confs) / len(confs)]
        else:
            groups = [sum(confs[i:i + window]) / window for i in range(len(confs) - window + 1)]
        mins.append(min(groups))
    return float(np.percentile(mins, percentile))


async def test_deepconf_threshold_is_the_references():
    # Warm-up traces with varying per-token confidence, some shorter than a window.
    rng = np.random.default_rng(0)
    warm = [(words(int(k), "42"), [float(x) for x in -rng.uniform(0.05, 1.5, size=int(k))])
            for k in rng.integers(3, 14, size=6)]
    gen = ScriptedGenerator(warm + [words(6, "42")] * 4)
    r = await tts.solve(P, DeepConf(10, warmup=6, keep=0.1, window=4, top_k=2), generator=gen)
    rows = [t.top_logprobs for t in r.traces[:6]]
    assert r.telemetry["threshold"] == pytest.approx(reference_threshold(rows, 4, 90), rel=1e-12)
    assert r.telemetry["warmup_confidences"] == pytest.approx(
        [reference_threshold([x], 4, 50) for x in rows], rel=1e-12)


async def test_deepconf_online_stops_low_confidence_traces_at_the_first_full_window():
    # Scripted top-2 rows are [lp, lp - 1], so token confidence = 0.5 - lp: 3.5 vs 0.55.
    confident, shaky = -3.0, -0.05
    warm = [(words(12, "42"), confident)] * 4
    final = [(words(12, "42"), confident), (words(12, "13"), shaky), (words(12, "42"), confident),
             (words(12, "13"), shaky)]
    gen = ScriptedGenerator(warm + final)
    # keep=0.9: the threshold is the 10th percentile of the warm-up's (equal) confidences
    r = await tts.solve(P, DeepConf(8, warmup=4, keep=0.9, window=5, top_k=2), generator=gen)
    assert r.telemetry["stop_reasons"] == {5: "low_confidence", 7: "low_confidence"}
    assert [t.num_tokens for t in r.traces] == [12] * 5 + [5, 12, 5]  # stopped at the 5th token
    assert r.answer == "42" and r.telemetry["voters"] == [0, 1, 2, 3, 4, 6]
    charged_equals_delivered(r)


async def test_deepconf_consensus_stops_sampling_early():
    gen = ScriptedGenerator([words(6, "42")] * 3 + [words(40, "42")] * 13)
    r = await tts.solve(P, DeepConf(16, warmup=3, keep=0.9, window=4, top_k=2, consensus=0.95, in_flight=2),
                        generator=gen)
    assert r.answer == "42"
    assert len(r.traces) == 3  # the warm-up was unanimous: no final trace was launched
    r2 = await tts.solve(P, DeepConf(16, warmup=3, keep=0.9, window=4, top_k=2, in_flight=2),
                         generator=ScriptedGenerator([words(6, "42")] * 3 + [words(40, "42")] * 13))
    assert len(r2.traces) == 16 and r2.usage.completion_tokens > 10 * r.usage.completion_tokens


async def test_deepconf_offline_filters_to_the_most_confident():
    # Three confident traces say 42; five shaky ones say 13: majority says 13, DeepConf 42.
    gen = ScriptedGenerator([(words(6, "42"), -3.0)] * 3 + [(words(6, "13"), -0.05)] * 5)
    common = dict(mode="offline", window=4, top_k=2)
    assert (await tts.solve(P, DeepConf(8, vote="majority", **common), generator=gen)).answer == "13"
    gen = ScriptedGenerator([(words(6, "42"), -3.0)] * 3 + [(words(6, "13"), -0.05)] * 5)
    r = await tts.solve(P, DeepConf(8, vote="filtered", keep=0.3, **common), generator=gen)
    assert r.answer == "42" and r.telemetry["voters"] == [0, 1, 2]


def test_deepconf_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="warmup"):
        DeepConf(8, warmup=9)
    with pytest.raises(ValueError, match="keep"):
        DeepConf(8, keep=1.5)


class NoLogprobs(ScriptedGenerator):
    """A backend that ignores requests for logprobs."""

    def _one(self, req: GenRequest) -> Trace:
        return super()._one(req.replace(logprobs=None))


async def test_deepconf_without_logprobs_is_a_clear_error():
    with pytest.raises(tts.TTSError, match="logprobs"):
        await tts.solve(P, DeepConf(4, warmup=2, window=2, top_k=2), generator=NoLogprobs([words(4, "1")]))


# -- ESC and adaptive-consistency ----------------------------------------------------------------
async def test_esc_stops_at_the_first_unanimous_window():
    gen = ScriptedGenerator([words(3, a) for a in ["1", "2", "3", "3", "4", "4", "5", "6"]])
    r = await tts.solve(P, ESC(8, window=2), generator=gen)
    assert r.telemetry["samples"] == 4 and r.stopped_by == "early_stop" and r.answer == "3"
    assert r.usage.generator_calls == 2


async def test_esc_runs_to_n_when_no_window_agrees():
    gen = ScriptedGenerator([words(3, a) for a in ["1", "2"]])
    r = await tts.solve(P, ESC(6, window=2), generator=gen)
    assert r.telemetry["samples"] == 6 and r.stopped_by == "done"


async def test_esc_answers_with_the_unanimous_window_not_the_overall_vote():
    """The reference (Yiwei98/ESC early_stop_math.py) breaks out of its window loop with the
    unanimous window's tally, so its answer is that window's. By hand, window 3 over
    [1 1 2 | 1 1 3 | 4 4 4]: windows 1 and 2 are split, window 3 is unanimous: answer 4 (the
    overall majority would be 1, four votes to three). Failed before the fix (answered 1)."""
    seq = [words(3, a) for a in ["1", "1", "2", "1", "1", "3", "4", "4", "4"]]
    r = await tts.solve(P, ESC(12, window=3), generator=ScriptedGenerator(seq))
    assert (r.answer, r.telemetry["samples"], r.stopped_by) == ("4", 9, "early_stop")
    # The last window counts too (the reference checks every window, the last one included).
    r = await tts.solve(P, ESC(9, window=3), generator=ScriptedGenerator(seq))
    assert (r.answer, r.telemetry["samples"], r.stopped_by) == ("4", 9, "done")


async def test_esc_empty_answers_vote_as_in_the_reference():
    """The reference's extraction gives '' for a sample without an answer, and '' is an answer
    like any other. By hand, window 2 over [none 5 | none none]: window 2 is unanimous on the
    empty answer: stop after 4 samples, answer None. With no_answer="abstains" (the old rule) a
    window holding a missing answer never stops: the 8 samples [none 5 none none] x 2 give 5.
    Failed before the fix (ran to 8 samples and answered 5)."""
    seq = [words(3, a) for a in [None, "5", None, None]]
    r = await tts.solve(P, ESC(8, window=2), generator=ScriptedGenerator(seq))
    assert (r.answer, r.telemetry["samples"], r.stopped_by) == (None, 4, "early_stop")
    r = await tts.solve(P, ESC(8, window=2, no_answer="abstains"), generator=ScriptedGenerator(seq))
    assert (r.answer, r.telemetry["samples"], r.stopped_by) == ("5", 8, "done")
    # No window unanimous, the empty answer wins the overall vote (3 of 6): the reference's
    # answer is '' (wrong), ours None; abstaining, 5 wins (2 votes to 1).
    seq = [words(3, a) for a in [None, None, "5", None, "7", "5"]]
    r = await tts.solve(P, ESC(6, window=3), generator=ScriptedGenerator(seq))
    assert r.answer is None and r.telemetry["votes"][""] == 3
    r = await tts.solve(P, ESC(6, window=3, no_answer="abstains"), generator=ScriptedGenerator(seq))
    assert r.answer == "5"


def test_esc_default_window_is_the_papers():
    assert ESC().window == 5


def _dirichlet_exact(counts: list[int]) -> float:
    """P(X_0 > X_j for all j) for independent X_i ~ Gamma(counts_i + 1): the Dirichlet
    probability that the leader is ahead, as one numerical integral (an independent check)."""
    from scipy import integrate, stats

    a = np.asarray(counts, dtype=float) + 1
    f = lambda x: stats.gamma.pdf(x, a[0]) * np.prod([stats.gamma.cdf(x, ai) for ai in a[1:]])  # noqa: E731
    return integrate.quad(f, 0, np.inf, epsabs=1e-12)[0]


def test_dirichlet_criterion_is_the_references():
    """pranjal2041/AdaptiveConsistency DirichletStoppingCriteria: with fewer than 3 distinct
    answers it returns the Beta criterion (exact: counts 3, 1 give sum_{j<=3} C(5, j) / 32 =
    26/32); otherwise it integrates over the top 5 answers only. Counts 5,1,1,1,1,1,1 (7 answers):
    top 5 gives 0.8134 (all 7 would give 0.7575). Failed before the fix (Monte Carlo over all
    answers: not exactly 26/32, and about 0.758)."""
    rng = np.random.default_rng(0)
    assert dirichlet_stop_probability([3, 1], rng) == 26 / 32 == beta_stop_probability(3, 1)
    assert dirichlet_stop_probability([4], rng) == beta_stop_probability(4, 0)
    assert _dirichlet_exact([5, 1, 1, 1, 1]) == pytest.approx(0.81339, abs=1e-4)
    # Monte Carlo with 20,000 draws: standard error <= 0.0035; 0.012 is over 3 standard errors.
    assert dirichlet_stop_probability([5, 1, 1, 1, 1, 1, 1], rng) == pytest.approx(0.81339, abs=0.012)
    assert dirichlet_stop_probability([1, 1, 5, 1], rng) == pytest.approx(_dirichlet_exact([5, 1, 1, 1]), abs=0.012)


def test_beta_criterion_matches_numerical_integration():
    for v1, v2 in [(1, 0), (3, 0), (4, 0), (5, 2), (9, 4)]:
        x = np.linspace(0, 1, 200_001)
        dens = x**v1 * (1 - x) ** v2
        num = np.trapezoid(dens[x >= 0.5], x[x >= 0.5])
        assert beta_stop_probability(v1, v2) == pytest.approx(num / np.trapezoid(dens, x), abs=1e-6)
    assert beta_stop_probability(4, 0) == 31 / 32


async def test_adaptive_consistency_stops_when_the_majority_is_settled():
    gen = ScriptedGenerator([words(3, "42")])
    r = await tts.solve(P, AdaptiveConsistency(40), generator=gen)
    assert r.telemetry["samples"] == 4  # P = 0.875 after 3, 31/32 >= 0.95 after 4
    assert r.stopped_by == "early_stop" and r.answer == "42"
    split = ScriptedGenerator([words(3, a) for a in ["1", "2"]])
    r = await tts.solve(P, AdaptiveConsistency(10), generator=split)
    assert r.telemetry["samples"] == 10 and r.stopped_by == "done"


def test_dirichlet_criterion():
    rng = np.random.default_rng(0)
    assert dirichlet_stop_probability([10, 0, 0], rng) > 0.99
    assert dirichlet_stop_probability([3, 3], rng) < 0.6
    assert math.isclose(dirichlet_stop_probability([5], rng), 1 - 0.5**6, abs_tol=0.01)  # = Beta(6, 1)


# -- certainty probing ---------------------------------------------------------------------------
class Probed(ScriptedGenerator):
    """Streams the scripted traces; answers probes (requests with a prefix) with a probe text
    that depends on how far the trace has got: 'unsure' before `certain_after` words, then
    `text(words so far)` (default "42} \\]"). Records the positions probed."""

    def __init__(self, completions, certain_after: int, answer: str = "42", text=None, delay: float = 0.0):
        super().__init__(completions, delay=delay)
        self.certain_after, self.answer, self.probes = certain_after, answer, 0
        self.text = text or (lambda so_far: f"{self.answer}}} \\]")
        self.positions: list[int] = []

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        if not req.prefix:
            return await super().generate(req)
        self.probes += 1
        so_far = len(req.prefix.split("... Oh")[0].split())
        self.positions.append(so_far)
        text = self.text(so_far) if so_far >= self.certain_after else "hmm, wait} maybe"
        return [Trace(text, 3, "length", prefix=req.prefix)], Usage(prompt_tokens=so_far, completion_tokens=3)


async def test_certainty_probe_stops_when_k_probes_agree():
    gen = Probed([words(200, "7")], certain_after=20)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=3), generator=gen)
    assert r.answer == "42" and r.telemetry["certain_stops"] == 1
    (t,) = r.traces
    assert t.finish_reason == "abort" and 40 <= t.num_tokens < 200  # probes at 24, 32, 40 agree
    # The trace's own tokens plus 3 tokens per probe: every probe is charged.
    assert r.usage.completion_tokens == t.num_tokens + 3 * gen.probes
    assert r.usage.generator_calls == 1 + gen.probes


async def test_certainty_probe_lets_a_trace_finish_when_never_certain():
    gen = Probed([words(30, "7")], certain_after=10_000)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=2), generator=gen)
    assert r.answer == "7" and r.telemetry["certain_stops"] == 0 and r.traces[0].num_tokens == 30


async def test_certainty_probe_hesitation_words_are_substrings():
    """Dynasor cot.py: certain = not any(word in probe_text.lower() for word in uncertain_words).
    The probe "42} Note: done" holds "no" inside "Note", so by the reference's rule it is never
    certain: the trace runs to its end and answers its own 7. Whole words (our variant) see no
    hesitation and stop on 42. Failed before the fix (whole words were the only rule: 42)."""
    note = lambda so_far: "42} Note: done"  # noqa: E731
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=2), generator=Probed([words(60, "7")], 0, text=note))
    assert r.answer == "7" and r.telemetry["certain_stops"] == 0 and r.traces[0].num_tokens == 60
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=2, hesitation="word"),
                        generator=Probed([words(60, "7")], 0, text=note))
    assert r.answer == "42" and r.telemetry["certain_stops"] == 1


async def test_certainty_probe_compares_answers_by_math_equivalence():
    """Dynasor groups the last k probe answers with math_equal (eqaul_group). Probes at 0, 8, 16
    answer 1/2, \\frac{1}{2}, 0.5 (one number): with k=3 the third probe completes agreement and
    the trace stops with the last probe's answer, 0.5. Compared as strings (compare="exact", the
    old rule) they never agree and the trace answers its own 7. Failed before the fix (7)."""
    from tts.answers.mathverify import group_answers

    forms = ["1/2", "\\frac{1}{2}", "0.5"]
    for i in range(3):  # warm the math-verify worker (its start takes seconds; the trace would end first)
        await group_answers(forms[i:] + forms[:i])
    half = lambda so_far: forms[(so_far // 8) % 3] + "} \\]"  # noqa: E731
    gen = Probed([words(400, "7")], 0, text=half, delay=0.002)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=3), generator=gen)
    assert r.answer == "0.5" and r.telemetry["certain_stops"] == 1 and gen.positions[:3] == [0, 8, 16]
    assert 16 <= r.traces[0].num_tokens < 400
    gen = Probed([words(100, "7")], 0, text=half)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=3, compare="exact"), generator=gen)
    assert r.answer == "7" and r.telemetry["certain_stops"] == 0


async def test_certainty_probe_first_probe_is_at_zero_tokens():
    """Dynasor probes the prompt before generating the first chunk: probes at 0, 8, 16, ...
    With k=2 and every probe certain on 42, probes at 0 and 8 agree: the trace stops soon after
    token 8 (before 16). Starting at `chunk` (probe_at_start=False, the old rule) the first two
    probes are at 8 and 16. Failed before the fix (first probe at 8)."""
    gen = Probed([words(200, "7")], certain_after=0)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=2), generator=gen)
    assert gen.positions[:2] == [0, 8] and r.answer == "42" and 8 <= r.traces[0].num_tokens < 16
    gen = Probed([words(200, "7")], certain_after=0)
    r = await tts.solve(P, CertaintyProbe(1, chunk=8, k=2, probe_at_start=False), generator=gen)
    assert gen.positions[:2] == [8, 16] and 16 <= r.traces[0].num_tokens < 24


def test_certainty_probe_bad_options_name_themselves():
    with pytest.raises(ValueError, match="hesitation"):
        CertaintyProbe(hesitation="regex")
    with pytest.raises(ValueError, match="compare"):
        CertaintyProbe(compare="fuzzy")


# -- the budget holds for every early-stopping strategy -------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tts.types import Budget  # noqa: E402

EARLY = [
    lambda n: FirstFinish(n, k=min(2, n)),
    lambda n: DeepConf(n, warmup=max(1, n // 3), window=3, top_k=2, keep=0.5),
    lambda n: DeepConf(n, mode="offline", window=3, top_k=2),
    lambda n: ESC(n, window=2),
    lambda n: AdaptiveConsistency(n),
    lambda n: CertaintyProbe(n, chunk=3, k=2, probe_tokens=3),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, len(EARLY) - 1),
    n=st.integers(1, 8),
    max_tokens=st.integers(1, 30),
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    cap=st.sampled_from(["completion_tokens", "total_tokens", "calls", "flops"]),
    value=st.integers(0, 400),
)
def test_no_early_stopping_run_exceeds_its_budget(which, n, max_tokens, lengths, cap, value):
    completions = [(" ".join(["w"] * k) + " \\boxed{1}", -0.3 - k / 50) for k in lengths]
    gen = ScriptedGenerator(completions, num_params=10)
    budget = Budget(**{cap: value * (20 if cap == "flops" else 1) if cap != "calls" else value % 6})
    r = tts.solve_sync(P, EARLY[which](n), generator=gen, budget=budget, sampling=tts.Sampling(max_tokens=max_tokens))
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)
    assert r.usage.completion_tokens >= sum(t.num_tokens for t in r.traces)  # probes cost extra, never less
