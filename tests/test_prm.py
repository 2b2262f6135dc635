"""Process reward models (verifiers/prm.py) on real vLLM engines with tiny random models.

- QwenPRM: a tiny random `Qwen2ForProcessRewardModel` (tests/tiny_models.py), in process with
  vLLM's pooling runner and behind a real vLLM server's /pooling route; the step rewards are
  checked against a plain-torch forward pass of the same weights.
- MathShepherdPRM and LLMJudgePRM: the session's tiny Llama engine (`vllm_generator`).
- The judge's arithmetic and the server retry policy also run on FAKES (clearly named): the
  scripted generator of tests/scripted.py and a tiny HTTP stub, since a real model cannot be
  made to say P(Yes) = 0.8 or a real server to fail on demand.

Engines run one at a time: the in-process PRM (class-scoped) is closed before the server starts,
and both before the session Llama engine is first asked for.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from scripted import ScriptedGenerator
from servers import StubServer, free_port, vllm_server

import tts
from tts.context import Accountant, Context
from tts.errors import TTSError
from tts.registry import lookup
from tts.types import Problem, Score, Trace
from tts.backends.common import byte_bound
from tts.backends.vllm import model_parameters
from verifiers import LLMJudgePRM, MathShepherdPRM, QwenPRM, aggregate
from verifiers.prm import split_steps

PROBLEM = Problem("p1", "Natalia sold 48 clips in April and half as many in May. How many clips in all?")
OTHER = Problem("p2", "Let x be the number. Then 2x + 3 = 11. What is x?")


def _trace(text: str, prefix: str = "") -> Trace:
    return Trace(text=text, num_tokens=len(text.split()), finish_reason="stop", prefix=prefix)


# 1, 2 and 4 steps; the last one continues a prefix (step-level search), which counts.
TRACES = [
    _trace("In May she sold 48 / 2 = 24, so 48 + 24 = 72. The answer is \\boxed{72}."),
    _trace("Step 1: compute 48 / 2 = 24.\n\nStep 2: add 48 + 24 = 72. The answer is \\boxed{72}."),
    _trace("Step 2: 48 * 2 = 96.\n\n\n\nStep 3: 96 + 48 = 144.\n\nThe answer is \\boxed{144}.",
           prefix="Step 1: April is 48.\n\n"),
]
NUM_STEPS = [1, 2, 4]
OTHER_TRACES = [_trace("2x = 8.\n\nSo x = 4. The answer is \\boxed{4}.")]

_REFERENCE: dict[str, list[Score]] = {}  # in-process QwenPRM scores, for the server test


async def scored(verifier, problem: Problem, traces: list[Trace], budget: tts.Budget | None = None,
                 generator=None) -> tuple[list[Score], tts.Usage]:
    """Scores through a context of their own, as a strategy's `ctx.score` gets them, and what
    the context charged for them."""
    gen = generator or ScriptedGenerator(["unused"])
    ctx = Context(problem, gen, Accountant(budget, gen.num_params, verifier.num_params), verifier=verifier)
    return await verifier.score(ctx, traces), ctx.usage


def seen(u: tts.Usage) -> int:
    """Every verifier prompt token the engine saw: computed or served from its prefix cache."""
    return u.verifier_tokens + u.verifier_cached_tokens


# -- aggregation and step splitting (no engine) -----------------------------------------------
def test_aggregate_hand_values():
    r = [0.9, 0.5, 0.8]
    assert aggregate(r, "last") == 0.8
    assert aggregate(r, "min") == 0.5
    assert aggregate(r, "prod") == pytest.approx(0.9 * 0.5 * 0.8)
    assert aggregate(r, "mean") == pytest.approx((0.9 + 0.5 + 0.8) / 3)
    assert aggregate([0.25], "prod") == 0.25
    assert all(aggregate([], how) == 0.0 for how in ("last", "min", "prod", "mean"))
    with pytest.raises(TTSError, match="unknown step aggregate 'max'"):
        aggregate(r, "max")


def test_steps_are_the_full_text_cut_at_the_delimiter():
    t = TRACES[2]
    assert split_steps(t.prefix + t.text) == [
        "Step 1: April is 48.", "Step 2: 48 * 2 = 96.", "Step 3: 96 + 48 = 144.", "The answer is \\boxed{144}."
    ]
    assert [len(split_steps(t.prefix + t.text)) for t in TRACES] == NUM_STEPS
    assert split_steps("a;b;;  ;c", ";") == ["a", "b", "c"]


# -- QwenPRM in process -----------------------------------------------------------------------
def _torch_step_rewards(model_dir: Path, ids: list[int], step_id: int) -> list[float]:
    """The reference's computation on the same weights, in plain torch (transformers' Qwen2
    body plus the score head): softmax over the two labels at each step token, index 1."""
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2Config, Qwen2Model

    w = load_file(str(model_dir / "model.safetensors"))
    body = Qwen2Model(Qwen2Config.from_pretrained(model_dir)).eval()
    body.load_state_dict({k.removeprefix("model."): v for k, v in w.items() if k.startswith("model.")})
    x = torch.tensor([ids])
    with torch.no_grad():
        h = body(x).last_hidden_state[0]
        h = torch.relu(h @ w["score.0.weight"].T + w["score.0.bias"])
        logits = h @ w["score.2.weight"].T + w["score.2.bias"]
    return torch.softmax(logits.double(), -1)[x[0] == step_id, 1].tolist()


@pytest.mark.engine
class TestQwenPRMInProcess:
    @pytest.fixture(scope="class")
    async def prm(self, tiny_prm_dir):
        prm = QwenPRM(str(tiny_prm_dir), enforce_eager=True, max_model_len=2048)
        yield prm
        await prm.close()

    async def test_step_rewards_match_a_torch_forward_pass(self, prm, tiny_prm_dir):
        assert prm.scoring == "incremental"  # chosen automatically: its own engine, ALL pooling
        scores, _ = await scored(prm, PROBLEM, TRACES)
        _REFERENCE["last"] = scores
        assert len(scores) == len(TRACES)
        for s, t, n in zip(scores, TRACES, NUM_STEPS):
            await prm._gen.engine.reset_prefix_cache()  # nothing cached, nothing remembered: one request
            [alone], u = await scored(QwenPRM(prm.model, engine=prm._gen), PROBLEM, [t])
            steps = prm.pieces(t)
            assert len(s.steps) == n == len(steps)
            assert all(0.0 <= r <= 1.0 for r in s.steps)
            assert s.value == s.steps[-1]  # aggregate="last"
            ids = prm.prompt_ids(PROBLEM, steps)
            _REFERENCE.setdefault("prompt_tokens", []).append(len(ids))
            # nothing remembered yet: one request, cut just after the last step token, all rows read
            assert s.path == "incremental" and seen(u) == prm.step_ends(ids, n)[-1] == len(ids) - 2
            assert u.verifier_calls == 1 and alone.steps == pytest.approx(s.steps, abs=1e-5)
            assert ids.count(prm._step_id) == n
            assert s.steps == pytest.approx(_torch_step_rewards(tiny_prm_dir, ids, prm._step_id), abs=1e-4)
        # The prompt is the model card's: chat template over system, question, steps + <extra_0>.
        text = prm._tokenizer.decode(prm.prompt_ids(PROBLEM, prm.pieces(TRACES[1])))
        assert text == (
            "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
            f"<|im_start|>user\n{PROBLEM.question}<|im_end|>\n"
            "<|im_start|>assistant\nStep 1: compute 48 / 2 = 24.<extra_0>"
            "Step 2: add 48 + 24 = 72. The answer is \\boxed{72}.<extra_0><|im_end|>\n"
        )

    async def test_each_aggregate(self, prm):
        base, _ = await scored(prm, PROBLEM, TRACES)
        for how in ("min", "prod", "mean"):
            other = QwenPRM(prm.model, engine=prm._gen, aggregate=how)  # shares the engine
            scores, _ = await scored(other, PROBLEM, TRACES)
            await other.close()  # does not stop the shared engine
            for s, b in zip(scores, base):
                assert s.steps == pytest.approx(b.steps, abs=1e-5)
                assert s.value == pytest.approx(aggregate(list(s.steps), how))
        assert (await scored(prm, PROBLEM, [_trace("A new step.")]))[1].verifier_tokens > 0  # the engine still runs

    async def test_model_aggregate_scores_the_response_as_one_step(self, prm):
        whole = QwenPRM(prm.model, engine=prm._gen, aggregate="model")
        for t in TRACES:
            [s], u = await scored(whole, PROBLEM, [t])
            assert len(s.steps) == 1 and 0.0 <= s.value <= 1.0 and s.value == s.steps[0]
            ids = whole.prompt_ids(PROBLEM, [t.prefix + t.text])
            assert ids.count(whole._step_id) == 1 and ids[-3] == whole._step_id  # <extra_0><|im_end|>\n
            assert seen(u) == len(ids) - 2  # cut after <extra_0>

    async def test_the_accountant_charges_prm_tokens(self, prm):
        fresh = QwenPRM(prm.model, engine=prm._gen)  # nothing remembered
        gen = ScriptedGenerator(["unused"])
        acc = Accountant(None, gen.num_params, fresh.num_params)
        ctx = Context(PROBLEM, gen, acc, verifier=fresh)
        await prm._gen.engine.reset_prefix_cache()
        scores = await ctx.score(TRACES)
        # every prompt token is computed or served from the cache: one cut prompt per trace, one
        # request each through the context
        cuts = [fresh.step_ends(fresh.prompt_ids(PROBLEM, fresh.pieces(t)), n) for t, n in zip(TRACES, NUM_STEPS)]
        u = ctx.usage
        assert seen(u) == sum(c[-1] for c in cuts) and u.verifier_calls == len(TRACES)
        assert u.total_tokens == u.verifier_tokens  # cached verifier tokens cost nothing
        assert ctx.telemetry["verifier_paths"] == {"incremental": len(TRACES)}
        assert fresh.num_params == model_parameters(fresh.model) > 0
        assert u.verifier_flops == 2 * fresh.num_params * u.verifier_tokens
        assert [t.score for t in TRACES] == [s.value for s in scores]
        # remembered now: scoring the same traces again sends nothing and costs nothing
        again, u2 = await scored(fresh, PROBLEM, TRACES)
        assert [s.steps for s in again] == [s.steps for s in scores] and u2 == tts.Usage()
        # a call whose worst case (its whole cut prompt, none of it cached) could go over the cap
        # is refused before it is sent
        other = QwenPRM(prm.model, engine=prm._gen)
        with pytest.raises(tts.BudgetExceeded):
            await scored(other, PROBLEM, TRACES[:1], tts.Budget(verifier_tokens=cuts[0][-1] - 1))
        _, fits = await scored(other, PROBLEM, TRACES[:1], tts.Budget(verifier_tokens=cuts[0][-1]))
        assert fits.verifier_calls == 1

    async def test_incremental_equals_full_prefix_as_a_path_grows(self, prm):
        """A path scored step by step as search grows it: incremental scoring computes about the
        new step's tokens (the prefix from the cache) and gives the full-prefix rewards."""
        inc = QwenPRM(prm.model, engine=prm._gen)
        full = QwenPRM(prm.model, engine=prm._gen, incremental=False)  # every row, cache not read
        assert (inc.scoring, full.scoring) == ("incremental", "full-prefix")
        steps = ["Step 1: compute 48 / 2 = 24.", "Step 2: add 48 + 24 = 72.",
                 "Step 3: check that 72 - 24 = 48, which holds.", "The answer is \\boxed{72}."]
        await prm._gen.engine.reset_prefix_cache()
        for k in range(1, len(steps) + 1):
            t = _trace("\n\n".join(steps[:k]))
            ([a], ua), ([b], ub) = await scored(inc, PROBLEM, [t]), await scored(full, PROBLEM, [t])
            assert a.steps == pytest.approx(b.steps, abs=1e-5) and a.value == pytest.approx(b.value, abs=1e-5)
            assert (a.path, b.path) == ("incremental", "full-prefix")
            ids = inc.prompt_ids(PROBLEM, inc.pieces(t))
            cut = inc.step_ends(ids, k)[-1]
            assert ub.verifier_tokens == len(ids) and ub.verifier_cached_tokens == 0
            assert seen(ua) == cut and ua.verifier_calls == 1  # one request: the newest step only
            if k > 1:
                new = cut - inc.step_ends(ids, k)[-2]
                block = 32  # VLLMGenerator's CPU KV block: the last partial block is recomputed
                assert new <= ua.verifier_tokens < new + block and ua.verifier_tokens < ub.verifier_tokens

    async def test_concurrent_calls_from_many_problems(self, prm):
        one, two = QwenPRM(prm.model, engine=prm._gen), QwenPRM(prm.model, engine=prm._gen)
        alone = [await scored(one, PROBLEM, TRACES), await scored(one, OTHER, OTHER_TRACES)]
        together = await asyncio.gather(scored(two, PROBLEM, TRACES), scored(two, OTHER, OTHER_TRACES))
        for (a, _), (b, u) in zip(alone, together):
            assert [s.steps for s in a] == [pytest.approx(s.steps, abs=1e-5) for s in b]
            assert u.verifier_tokens > 0  # computed again, not remembered by `one`

    async def test_empty_trace_costs_nothing(self, prm):
        [s], u = await scored(prm, PROBLEM, [_trace("  \n\n ")])
        assert s == Score(0.0) and u == tts.Usage()


def test_qwen_prm_needs_the_step_token(tmp_path):
    from tiny_models import build_qwen2_prm

    path = build_qwen2_prm(tmp_path / "no-step-token", step_token=None)
    with pytest.raises(TTSError) as e:
        QwenPRM(str(path))  # refused before any engine starts
    assert "<extra_0>" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(TTSError, match="<extra_0>"):
        lookup("verifier", "qwen_prm")(model=str(path), generator=None)
    with pytest.raises(TTSError, match="unknown step aggregate"):
        QwenPRM(str(path), aggregate="max")


# -- QwenPRM behind a vLLM server -------------------------------------------------------------
@pytest.fixture(scope="module")
async def reference_scores(tiny_prm_dir):
    """The in-process scores (from the class above, or computed here when run alone), taken
    before the server starts so that only one engine runs at a time."""
    if "last" not in _REFERENCE:
        prm = QwenPRM(str(tiny_prm_dir), enforce_eager=True, max_model_len=2048)
        try:
            _REFERENCE["last"], _ = await scored(prm, PROBLEM, TRACES)
            _REFERENCE["prompt_tokens"] = [len(prm.prompt_ids(PROBLEM, prm.pieces(t))) for t in TRACES]
        finally:
            await prm.close()
    return _REFERENCE["last"]


@pytest.mark.engine
class TestQwenPRMServer:
    """A real vLLM server of the tiny PRM, stopped when this class is done."""

    @pytest.fixture(scope="class")
    def prm_server(self, tiny_prm_dir, reference_scores, tmp_path_factory):
        """Base URL of a vLLM server of the tiny PRM (pooling runner), stopped when the class is done.

        The tiny tokenizer's <extra_0> is not Qwen's id 151651, vLLM's default step_tag_id for this
        architecture, so the server is told the id with --pooler-config."""
        from transformers import AutoTokenizer

        step_id = AutoTokenizer.from_pretrained(tiny_prm_dir).convert_tokens_to_ids("<extra_0>")
        log_path = tmp_path_factory.mktemp("log") / "vllm_prm_server.log"
        with vllm_server(
            tiny_prm_dir, log_path, "--runner", "pooling", "--pooler-config", json.dumps({"step_tag_id": step_id}),
            timeout=420, name="vLLM PRM server",  # ~1-3 min on a busy shared machine
        ) as port:
            yield f"http://127.0.0.1:{port}/v1"

    async def test_scores_equal_in_process(self, prm_server, reference_scores, tiny_prm_dir):
        prm = QwenPRM(str(tiny_prm_dir), base_url=prm_server)
        one = QwenPRM(str(tiny_prm_dir), base_url=prm_server, aggregate="model")
        try:
            per_trace = [await scored(prm, PROBLEM, [t]) for t in TRACES]
            whole, _ = await scored(one, PROBLEM, TRACES[1:2])
            # the worst case reserved is a byte bound of the prompt (no tokenizer here): it holds
            bound = byte_bound(prm.messages(PROBLEM, prm.pieces(TRACES[0])))
            _, fits = await scored(prm, PROBLEM, TRACES[:1], tts.Budget(verifier_tokens=bound))
            with pytest.raises(tts.BudgetExceeded):
                await scored(prm, PROBLEM, TRACES[:1], tts.Budget(verifier_tokens=bound - 1))
        finally:
            await prm.close()
            await one.close()
        assert prm.scoring == "full-prefix"  # a server's /pooling route cannot read the cache
        for ([s], u), ref, n in zip(per_trace, reference_scores, _REFERENCE["prompt_tokens"]):
            assert s.steps == pytest.approx(ref.steps, abs=1e-4)
            assert s.value == pytest.approx(ref.value, abs=1e-4)
            assert u.verifier_tokens == n and s.path == "full-prefix"  # the server's usage: the same prompt
        assert fits.verifier_tokens == _REFERENCE["prompt_tokens"][0] <= bound
        assert len(whole[0].steps) == 1
        assert prm.num_params == model_parameters(str(tiny_prm_dir))


@pytest.mark.engine
async def test_server_with_the_plugin_scores_incrementally(tiny_prm_dir, tmp_path):
    """A vLLM server of the tiny PRM with ttscale's IO-processor plugin (verifiers/prm_plugin.py):
    QwenPRM(base_url, incremental=True) gets the step rewards of a plain-torch forward pass of
    the same weights, and a path grown by one step reads its scored prefix from the server's
    prefix cache: it computes only what the cache did not hold (as in process), while the
    full-prefix path of the same server would compute every token again. Failed before: a
    server could not score incrementally (TTSError)."""
    from transformers import AutoTokenizer

    step_id = AutoTokenizer.from_pretrained(tiny_prm_dir).convert_tokens_to_ids("<extra_0>")
    with vllm_server(tiny_prm_dir, tmp_path / "plugin_server.log", "--runner", "pooling", "--pooler-config",
                     json.dumps({"tok_pooling_type": "ALL"}), "--enable-prefix-caching", "--io-processor-plugin",
                     "ttscale_prm", "--block-size", "32", timeout=420,
                     name="vLLM PRM server with the ttscale_prm plugin") as port:
        prm = QwenPRM(str(tiny_prm_dir), base_url=f"http://127.0.0.1:{port}/v1", incremental=True)
        try:
            first, u1 = await scored(prm, PROBLEM, TRACES[2:])
            grown = _trace(TRACES[2].text + "\n\nSo 144 it is, again and again and again and again.",
                           prefix=TRACES[2].prefix)
            [g], u2 = await scored(prm, PROBLEM, [grown])
            # one score call's first prompts go as one request: one verifier call for three traces
            batched, u3 = await scored(prm, OTHER, OTHER_TRACES + [_trace("x = 4.")] + OTHER_TRACES)
        finally:
            await prm.close()
    assert u3.verifier_calls == 1 and batched[0] is batched[2] and len(batched[1].steps) == 1
    assert prm.scoring == "incremental" and first[0].path == g.path == "incremental"
    ids = prm.prompt_ids(PROBLEM, prm.pieces(grown))
    torch_rewards = _torch_step_rewards(tiny_prm_dir, ids, step_id)
    assert list(g.steps) == pytest.approx(torch_rewards, abs=1e-3)
    assert list(first[0].steps) == pytest.approx(torch_rewards[:4], abs=1e-3)
    # each prompt is cut just after its newest step's token (the template's closing tokens dropped)
    before = prm.step_ends(prm.prompt_ids(PROBLEM, prm.pieces(TRACES[2])), 4)[-1]
    cut = prm.step_ends(ids, 5)[-1]
    assert seen(u1) == before
    # the grown path: the whole cut prompt seen, most of it from the cache, at least the new step computed
    assert seen(u2) == cut and u2.verifier_cached_tokens > 0
    assert cut - before <= u2.verifier_tokens < cut


_POOLED = {
    "id": "pool-1", "object": "list", "created": 0, "model": "stub",
    "data": [{"index": 0, "object": "pooling", "data": [[0.0, math.log(3.0)], [math.log(4.0), 0.0]]}],
    "usage": {"prompt_tokens": 42, "total_tokens": 42, "completion_tokens": 0},
}


async def test_server_retries_then_scores(tiny_prm_dir):
    busy = (503, {"error": {"message": "overloaded", "type": "ServiceUnavailable", "code": 503}})
    with StubServer([busy, busy, (200, _POOLED)]) as stub:
        prm = QwenPRM(str(tiny_prm_dir), base_url=stub.url, max_retries=3, backoff=0.01)
        try:
            [s], u = await scored(prm, PROBLEM, TRACES[1:2])
        finally:
            await prm.close()
    assert stub.hits == 3 and stub.paths == ["/pooling"] * 3  # at the root, not under /v1
    assert s.steps == pytest.approx((0.75, 0.2)) and s.value == pytest.approx(0.2) and u.verifier_tokens == 42


async def test_incremental_scoring_against_a_server_without_the_plugin_says_how_to_start_one(tiny_prm_dir):
    """FAKE server: vLLM's answer to a plugin request when no IO-processor plugin is loaded."""
    no_plugin = (400, {"error": {"message": "No IOProcessor plugin installed. Please refer to the documentation",
                                 "type": "BadRequestError", "code": 400}})
    with StubServer([no_plugin]) as stub:
        prm = QwenPRM(str(tiny_prm_dir), base_url=stub.url, incremental=True)
        with pytest.raises(TTSError, match="--io-processor-plugin ttscale_prm"):
            await scored(prm, PROBLEM, TRACES[1:2])
        await prm.close()
    assert stub.paths == ["/pooling"]


async def test_server_step_count_mismatch_and_dead_server(tiny_prm_dir):
    empty = dict(_POOLED, data=[{"index": 0, "object": "pooling", "data": []}])
    with StubServer([(200, empty)]) as stub:
        prm = QwenPRM(str(tiny_prm_dir), base_url=stub.url)
        with pytest.raises(TTSError, match="step_tag_id"):
            await scored(prm, PROBLEM, TRACES[1:2])
        await prm.close()
    url = f"http://127.0.0.1:{free_port()}/v1"
    prm = QwenPRM(str(tiny_prm_dir), base_url=url, max_retries=2, backoff=0.01)
    with pytest.raises(TTSError, match=f"cannot connect to {url} \\(2 attempts\\)"):
        await scored(prm, PROBLEM, TRACES[:1])
    await prm.close()


# -- MathShepherdPRM on the tiny Llama --------------------------------------------------------
# The tiny Llama's vocabulary has no "ки"; " ####", " +" and " -" are single tokens of it.
SHEPHERD = dict(step_tag="####", good_token="+", bad_token="-")


@pytest.mark.engine
async def test_math_shepherd_step_rewards(vllm_generator):
    ms = MathShepherdPRM(engine=vllm_generator, **SHEPHERD)
    assert ms.model == vllm_generator.model and ms.num_params == vllm_generator.num_params
    scores, u = await scored(ms, PROBLEM, TRACES)
    for s, n in zip(scores, NUM_STEPS):
        assert len(s.steps) == n and all(0.0 <= r <= 1.0 for r in s.steps) and s.value == s.steps[-1]
    # one request per step, each its tag prompt: computed or served from the prefix cache
    prompts = [p for t in TRACES for p in ms.tag_prompts(PROBLEM, split_steps(t.prefix + t.text))]
    assert u.verifier_calls == sum(NUM_STEPS) and seen(u) == sum(len(p) for p in prompts) and u.verifier_tokens > 0
    # the model card's input: f"{question} {output}", each step followed by " ####", newline-joined
    steps = split_steps(TRACES[2].prefix + TRACES[2].text)
    assert ms.prompt(PROBLEM, steps) == (
        f"{PROBLEM.question} Step 1: April is 48. ####\nStep 2: 48 * 2 = 96. ####\n"
        "Step 3: 96 + 48 = 144. ####\nThe answer is \\boxed{144}. ####"
    )
    # Hand computation for step 2 from vLLM's prompt logprobs (another path through the engine):
    # the tokens up to that tag followed by "+" (resp. "-") give log p(+) (log p(-)) as the
    # logprob of the prompt's last token.
    from vllm import SamplingParams

    prefix = ms.tag_prompts(PROBLEM, steps)[1]
    assert prefix[-1] == ms._tag_id
    lp = {}
    for label in (ms._good_id, ms._bad_id):
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        async for out in vllm_generator.engine.generate({"prompt_token_ids": prefix + [label]}, params, f"hand-{label}"):
            final = out
        lp[label] = final.prompt_logprobs[-1][label].logprob
    hand = math.exp(lp[ms._good_id]) / (math.exp(lp[ms._good_id]) + math.exp(lp[ms._bad_id]))
    assert scores[2].steps[1] == pytest.approx(hand, abs=1e-4)
    assert await scored(ms, PROBLEM, [_trace("")]) == ([Score(0.0)], tts.Usage())
    await ms.close()  # shared engine: still running afterwards
    assert vllm_generator.engine is not None


@pytest.mark.engine
async def test_math_shepherd_missing_tokens(vllm_generator):
    with pytest.raises(TTSError) as e:
        MathShepherdPRM(engine=vllm_generator)  # Math-Shepherd's own tag "ки"
    assert "'ки'" in str(e.value) and vllm_generator.model in str(e.value)
    with pytest.raises(TTSError, match="good label 'zzqx'"):
        MathShepherdPRM(engine=vllm_generator, step_tag="####", good_token="zzqx")


@pytest.mark.engine
async def test_math_shepherd_incremental_equals_full_prefix(vllm_generator):
    """A path grown step by step: the incremental Math-Shepherd PRM sends only the newest step
    (its earlier rewards remembered) and gives the rewards of scoring every step again."""
    inc = MathShepherdPRM(engine=vllm_generator, **SHEPHERD)
    full = MathShepherdPRM(engine=vllm_generator, incremental=False, **SHEPHERD)
    steps = split_steps(TRACES[2].prefix + TRACES[2].text)
    for k in range(1, len(steps) + 1):
        t = _trace("\n\n".join(steps[:k]))
        ([a], ua), ([b], ub) = await scored(inc, PROBLEM, [t]), await scored(full, PROBLEM, [t])
        assert a.steps == pytest.approx(b.steps, abs=1e-5)
        assert (a.path, b.path) == ("incremental", "full-prefix")
        prompts = inc.tag_prompts(PROBLEM, steps[:k])
        assert seen(ua) == len(prompts[-1]) and ua.verifier_calls == 1  # the newest step only
        assert seen(ub) == sum(len(p) for p in prompts)  # every step again
    assert (await scored(inc, PROBLEM, [t]))[1] == tts.Usage()  # all remembered: nothing sent


# -- LLMJudgePRM ------------------------------------------------------------------------------
@pytest.mark.engine
async def test_llm_judge_on_the_tiny_llama(vllm_generator):
    judge = lookup("verifier", "llm_judge")(model=None, generator=vllm_generator)
    assert isinstance(judge, LLMJudgePRM) and judge.num_params == vllm_generator.num_params
    acc = Accountant(None, vllm_generator.num_params, judge.num_params)
    ctx = Context(PROBLEM, vllm_generator, acc, verifier=judge)
    scores = await ctx.score(TRACES)
    for s, n in zip(scores, NUM_STEPS):
        assert len(s.steps) == n and all(0.0 <= r <= 1.0 for r in s.steps)
    reqs = [r for t in TRACES for r in judge.requests(PROBLEM, t)]
    expected = sum([await vllm_generator.count_prompt_tokens(r) + 1 for r in reqs])
    assert seen(ctx.usage) == expected  # computed + served from the prefix cache
    assert ctx.usage.verifier_calls == 1 and ctx.usage.generator_calls == 0  # one batch (judge_many)

    last = LLMJudgePRM(vllm_generator, steps="last")
    scores, _ = await scored(last, PROBLEM, TRACES)
    assert all(len(s.steps) == 1 for s in scores)
    assert "Latest step:\nThe answer is \\boxed{144}." in last.requests(PROBLEM, TRACES[2])[0].messages[-1]["content"]

    # the generator now reports the top-k tokens' strings, aligned with their logprobs
    [t], _ = await vllm_generator.generate(reqs[0])
    assert len(t.top_tokens) == len(t.top_logprobs) == 1 and len(t.top_tokens[0]) == len(t.top_logprobs[0]) == 20
    assert all(isinstance(x, str) for x in t.top_tokens[0])
    if t.finish_reason == "length" and getattr(t, "token_ids", None):  # greedy: emitted = top one
        assert t.top_tokens[0][0] == vllm_generator.tokenizer.decode(t.token_ids[:1])


async def test_llm_judge_reads_p_yes_on_a_scripted_judge():
    # FAKE judge: every first token's top-k is these; P(Yes-like) = 0.3 + 0.1, P(No) = 0.1.
    top = [("Yes", math.log(0.3)), (" No", math.log(0.1)), (" yes", math.log(0.1)), ("Maybe", math.log(0.5))]
    gen = ScriptedGenerator(["Yes"], top=top)
    judge = LLMJudgePRM(gen)
    acc = Accountant(None, 1000, judge.num_params)
    ctx = Context(PROBLEM, gen, acc, verifier=judge)
    scores = await ctx.score(TRACES)
    assert [len(s.steps) for s in scores] == NUM_STEPS
    assert all(r == pytest.approx(0.8, abs=1e-12) for s in scores for r in s.steps)
    reqs = [r for t in TRACES for r in judge.requests(PROBLEM, t)]
    assert gen.calls == len(reqs) == sum(NUM_STEPS)
    assert all(r.max_tokens == 1 and r.logprobs == 20 for r in reqs)
    assert ctx.usage.verifier_tokens == sum([await gen.count_prompt_tokens(r) + 1 for r in reqs])
    assert ctx.usage.verifier_flops == 2 * 1000 * ctx.usage.verifier_tokens

    # a path grown by one step: only the new step is judged (the others remembered) ...
    grown = _trace(TRACES[2].text + "\n\nSo 144 it is.", prefix=TRACES[2].prefix)
    before = gen.calls
    ctx2 = Context(PROBLEM, gen, Accountant(None, 1000, judge.num_params), verifier=judge)
    [g] = await ctx2.score([grown])
    assert gen.calls - before == 1 and g.path == "incremental" and len(g.steps) == 5
    assert g.steps[:4] == scores[2].steps and ctx2.telemetry["verifier_paths"] == {"incremental": 1}
    assert ctx2.usage.verifier_tokens == await gen.count_prompt_tokens(judge.requests(PROBLEM, grown)[-1]) + 1
    # ... while incremental=False judges every step again
    again = LLMJudgePRM(gen, incremental=False)
    before = gen.calls
    [h], _ = await scored(again, PROBLEM, [grown])
    assert gen.calls - before == 5 and h.path == "full-prefix" and h.steps == g.steps

    # neither word among the top tokens: 0.5
    none = LLMJudgePRM(ScriptedGenerator(["x"], top=[("Maybe", -0.1), ("Perhaps", -2.0)]), steps="last")
    assert (await scored(none, PROBLEM, TRACES[:1]))[0][0].steps == (0.5,)
    # a generator that reports no token strings cannot be read
    with pytest.raises(TTSError, match="top_tokens"):
        await scored(LLMJudgePRM(ScriptedGenerator(["Yes"])), PROBLEM, TRACES[:1])
    with pytest.raises(TTSError, match="needs a judge"):
        lookup("verifier", "llm_judge")()


def test_openai_generator_fills_top_tokens():
    from tts.backends.openai import _add_logprobs

    entry = SimpleNamespace(
        token="Yes", logprob=-0.2,
        top_logprobs=[SimpleNamespace(token=" No", logprob=-1.9), SimpleNamespace(token="Yes", logprob=-0.2),
                      SimpleNamespace(token="yes", logprob=-3.0)],
    )
    t = _trace("")
    _add_logprobs(t, SimpleNamespace(content=[entry]), 2)
    assert t.top_logprobs == [[-0.2, -1.9]] and t.top_tokens == [["Yes", " No"]]


# -- the scoring path: chosen automatically, remembered step prefixes (no engine) --------------
def test_step_memo_keys_are_per_step_prefix():
    from verifiers.prm import StepMemo

    a = StepMemo.keys("q", ["s1", "s2", "s3"])
    assert a[:2] == StepMemo.keys("q", ["s1", "s2"])  # a path's prefix has its parent's keys
    assert len(set(a)) == 3
    assert StepMemo.keys("q", ["ab", "c"])[-1] != StepMemo.keys("q", ["a", "bc"])[-1]
    assert StepMemo.keys("q2", ["s1"]) != StepMemo.keys("q", ["s1"])
    memo = StepMemo(size=2)
    memo.put(a, [0.1, 0.2, 0.3])
    assert memo.get(a) == [None, 0.2, 0.3] and len(memo) == 2  # bounded: the oldest forgotten


class _FakeEngine:
    """A FAKE in-process engine handle (no engine runs): only the configuration QwenPRM reads
    to choose its scoring path, with the tiny PRM's real tokenizer."""

    def __init__(self, model: str, pooling: str, caching: bool = True):
        from transformers import AutoTokenizer

        self.model, self.num_params, self.tokenizer = model, 1000, AutoTokenizer.from_pretrained(model)
        self.engine = SimpleNamespace(
            model_config=SimpleNamespace(pooler_config=SimpleNamespace(tok_pooling_type=pooling)),
            vllm_config=SimpleNamespace(cache_config=SimpleNamespace(enable_prefix_caching=caching)),
        )

    async def final_output(self, ids, params):  # pragma: no cover - never called here
        raise AssertionError("no engine here")


def test_qwen_prm_chooses_its_scoring_path(tiny_prm_dir):
    model = str(tiny_prm_dir)
    assert QwenPRM(model, engine=_FakeEngine(model, "ALL")).scoring == "incremental"
    assert QwenPRM(model, engine=_FakeEngine(model, "STEP")).scoring == "full-prefix"
    assert QwenPRM(model, engine=_FakeEngine(model, "ALL", caching=False)).scoring == "full-prefix"
    assert QwenPRM(model, engine=_FakeEngine(model, "ALL"), incremental=False).scoring == "full-prefix"
    with pytest.raises(TTSError, match="tok_pooling_type='ALL'"):
        QwenPRM(model, engine=_FakeEngine(model, "STEP"), incremental=True)
    assert QwenPRM(model, base_url="http://127.0.0.1:9/v1").scoring == "full-prefix"
    # behind a server: incremental only when asked (the server needs the ttscale_prm plugin)
    assert QwenPRM(model, base_url="http://127.0.0.1:9/v1", incremental=True).scoring == "incremental"


def test_usage_splits_verifier_cached_tokens():
    u = tts.Usage(verifier_tokens=10, verifier_cached_tokens=90) + tts.Usage(verifier_tokens=5, verifier_cached_tokens=3)
    assert (u.verifier_tokens, u.verifier_cached_tokens, u.total_tokens) == (15, 93, 15)
    assert tts.Usage.from_dict(u.to_dict()) == u and u.to_dict()["verifier_cached_tokens"] == 93
    acc = Accountant(None, 1, 7)
    acc.charge_verification(tts.Usage(prompt_tokens=43, cached_tokens=40, completion_tokens=1))
    assert (acc.usage.verifier_tokens, acc.usage.verifier_cached_tokens, acc.usage.verifier_flops) == (4, 40, 2 * 7 * 4)
