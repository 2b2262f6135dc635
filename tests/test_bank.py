"""Trace banks: format, resume, corruption, replay (without replacement, streaming, errors), the
math100 import against the file's own figures, and one live-vs-replay run on the real engine."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from scripted import ScriptedGenerator

import tts
from strategies import BestOfN, SelfConsistency
from tts.bank import Bank, BankRecord, BankWriter, RecordedTrace, import_math100
from tts.errors import TTSError
from tts.backends.recording import RecordingGenerator
from tts.experiment.record import record_bank, record_run
from tts.backends.replay import ReplayGenerator
from tts.types import DEFAULT_SYSTEM_PROMPT, GenRequest, Problem, Usage
from verifiers import Confidence
from verifiers.recorded import RecordedScore
from tts.answers.voting import vote

SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 32, "stop": []}
MANIFEST = {"model": "m", "num_params": 1000, "task": "t", "sampling": SAMPLING, "logprobs": 3, "seed": 0,
            "system_prompt": DEFAULT_SYSTEM_PROMPT}


def sample(i: int, tokens: int = 10, k: int = 3) -> RecordedTrace:
    rng = np.random.default_rng(i)
    text = f"Step one {i}.\n\nStep two.\n\nSo \\boxed{{{i % 3}}}"
    top = rng.normal(-2, 1, (tokens, k)).astype(np.float32)
    top[1, k - 1] = np.nan  # a short row (fewer than k alternatives)
    return RecordedTrace(
        text=text, num_tokens=tokens, finish_reason="stop" if i % 2 else "length", answer=str(i % 3),
        correct=i % 3 == 1, score=0.1 * i, prm_score=0.5,
        token_ids=rng.integers(0, 150_000, tokens).astype(np.int32),
        logprobs=rng.normal(-1, 1, tokens).astype(np.float32),
        top_logprobs=top,
        char_ends=np.linspace(1, len(text), tokens).astype(np.int32),
        step_scores=np.asarray([0.9, 0.8, 0.7], np.float32),
    )


def rec(key: str, n: int = 6, question: str | None = None) -> BankRecord:
    return BankRecord(key, question or f"Question {key}?", [sample(i) for i in range(n)],
                      system=DEFAULT_SYSTEM_PROMPT, gold="1", prompt_tokens=17, cached_tokens=5,
                      extra={"level": 3})


def make_bank(path, keys=("a", "b", "c"), n=6) -> Bank:
    w = BankWriter(path, MANIFEST)
    for k in keys:
        assert w.append(rec(k, n))
    return Bank(path)


def request(key: str, n: int = 1, **kw) -> GenRequest:
    msgs = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": f"Question {key}?"}]
    return GenRequest(msgs, n=n, max_tokens=kw.pop("max_tokens", 32), temperature=kw.pop("temperature", 0.7), **kw)


def same(a, b) -> bool:
    return a is None and b is None or np.array_equal(a, b, equal_nan=True)


# -- format ------------------------------------------------------------------------------------
def test_round_trip_keeps_every_field_and_array(tmp_path):
    bank = make_bank(tmp_path / "bank")
    assert bank.keys() == ["a", "b", "c"] and bank.model == "m" and bank.logprobs == 3
    back = bank.get("b")
    want = rec("b")
    assert (back.question, back.system, back.gold, back.prompt_tokens, back.cached_tokens, back.extra) == (
        want.question, want.system, want.gold, 17, 5, {"level": 3})
    for s, w in zip(back.samples, want.samples):
        for f in ("text", "num_tokens", "finish_reason", "answer", "correct", "prm_score"):
            assert getattr(s, f) == getattr(w, f), f
        assert s.score == pytest.approx(w.score)
        for f in ("token_ids", "logprobs", "top_logprobs", "char_ends", "step_scores"):
            assert same(getattr(s, f), getattr(w, f)), f
            assert getattr(s, f).dtype == getattr(w, f).dtype
        # step boundaries: char offsets of each "\n\n"
        assert s.step_ends.tolist() == [i for i in range(len(s.text)) if s.text.startswith("\n\n", i)]
        assert s.steps() == [p for p in s.text.split("\n\n") if p.strip()]
        assert s.top_rows(2)[1] == pytest.approx(w.top_logprobs[1, :2].tolist())
        assert len(s.top_rows(3)[1]) == 2  # the padding is not a logprob
    st = bank.stats()
    assert st["problems"] == 3 and st["samples"] == 18 and st["tokens"] == 180 and st["bytes_per_token"] > 0


async def test_resume_skips_recorded_problems_and_drops_a_torn_write(tmp_path):
    out = tmp_path / "bank"
    problems = [Problem(f"p{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(4)]
    gen = ScriptedGenerator(["so \\boxed{2}", "hence \\boxed{4}"])
    sampling = tts.Sampling(max_tokens=8)
    await record_bank(problems[:2], gen, out, n=3, sampling=sampling, logprobs=1)
    calls = gen.calls
    # An interrupted write: record bytes without their index line, and a torn index line.
    with open(out / "records.bin", "ab") as f:
        f.write(b"TTSR\x10\x00\x00\x00partial")
    with open(out / "index.jsonl", "ab") as f:
        f.write(b'{"key": "p9", "q": "x", "off')
    assert Bank(out).keys() == ["p0", "p1"]  # readers see committed records only
    bank = await record_bank(problems, gen, out, n=3, sampling=sampling, logprobs=1)
    assert gen.calls == calls + 2  # p0, p1 skipped
    assert bank.keys() == ["p0", "p1", "p2", "p3"]
    assert [len(r.samples) for r in bank.records()] == [3, 3, 3, 3]
    r = bank.get("p1")
    assert [s.answer for s in r.samples] == ["4", "2", "4"] and r.prompt_tokens > 0
    assert r.samples[0].logprobs.tolist() == [-0.5, -0.5] and r.samples[0].top_logprobs.shape == (2, 1)
    # Resuming with another configuration is refused before anything is generated.
    with pytest.raises(TTSError, match="temperature"):
        await record_bank(problems, gen, out, n=3, sampling=tts.Sampling(max_tokens=8, temperature=1.0), logprobs=1)


def test_damaged_bank_is_an_error_on_open_never_a_smaller_bank(tmp_path):
    """Each damage is found when the bank is opened and named with its repair. Failed before
    the check on open: a garbage index line made a silently smaller bank, and a corrupt or
    truncated record surfaced only when (and if) a run asked for it."""
    from tts.bank.repair import drop_damaged

    make_bank(tmp_path / "bank")
    rb, idx = tmp_path / "bank" / "records.bin", tmp_path / "bank" / "index.jsonl"
    good_rb, good_idx = rb.read_bytes(), idx.read_text()
    lines = good_idx.splitlines()
    # One garbage index line in the middle.
    idx.write_text("\n".join([lines[0], lines[1].replace('"offset": ', '"offset": #'), lines[2]]) + "\n")
    with pytest.raises(TTSError, match=r"damaged \(1 problem: index line 2: not an index entry.*tts\.bank\.repair"):
        Bank(tmp_path / "bank")
    with pytest.raises(TTSError, match="index line 2"):
        BankWriter(tmp_path / "bank", MANIFEST)  # never appends to a damaged bank either
    # A flipped byte inside record "b".
    idx.write_text(good_idx)
    data = bytearray(good_rb)
    data[json.loads(lines[1])["offset"] + 40] ^= 0xFF
    rb.write_bytes(bytes(data))
    with pytest.raises(TTSError, match=r"record 'b' \(index line 2\): corrupt"):
        Bank(tmp_path / "bank")
    # A truncated record file (a copy cut short): the last record is named.
    rb.write_bytes(good_rb[: len(good_rb) - 100])
    with pytest.raises(TTSError, match=r"record 'c' \(index line 3\): truncated: records\.bin ends at byte"):
        Bank(tmp_path / "bank")
    # The named repair keeps every intact record and backs up the old index.
    assert [d.key for d in drop_damaged(tmp_path / "bank")] == ["c"]
    assert Bank(tmp_path / "bank").keys() == ["a", "b"] and (tmp_path / "bank" / "index.jsonl.damaged").exists()
    assert Bank(tmp_path / "bank").get("a").samples[0].text.startswith("Step one")
    # A record damaged after the bank was opened is still named when it is read.
    bank = Bank(tmp_path / "bank")
    rb.write_bytes(bytes(data[: len(good_rb) - 100]))
    with pytest.raises(TTSError, match=r"records\.bin: record 'b'.*corrupt.*tts\.bank\.repair"):
        bank.get("b")
    assert [r.key for r in bank.records(skip_corrupt=True)] == ["a"]
    # Not a bank at all.
    with pytest.raises(TTSError, match="not a trace bank"):
        Bank(tmp_path)


# -- replay ------------------------------------------------------------------------------------
async def test_replay_serves_without_replacement_in_a_seeded_order(tmp_path):
    bank = make_bank(tmp_path / "bank")
    gen = ReplayGenerator(bank, seed=0)
    texts = [t.text for _ in range(3) for t in (await gen.generate(request("a", n=2)))[0]]
    assert len(set(texts)) == 6  # every sample once
    order = gen.order("a")
    perm = list(range(6))
    random.Random("0:a").shuffle(perm)
    assert order == perm == gen.served("a")
    assert texts == [bank.get("a").samples[i].text for i in order]
    with pytest.raises(TTSError, match="has 6 samples of problem 'a'.*took 6"):
        await gen.generate(request("a"))
    assert ReplayGenerator(bank, seed=0).order("a") == order  # deterministic
    assert ReplayGenerator(bank, seed=1).order("a") != order  # another seed, another order
    gen.reset()
    again = [t.text for t in (await gen.generate(request("a", n=6)))[0]]
    assert again == texts
    traces, usage = await gen.generate(request("b", n=2, logprobs=2))
    s = bank.get("b").samples[gen.order("b")[0]]
    assert traces[0].logprobs == s.logprobs.tolist() and traces[0].top_logprobs[0] == s.top_logprobs[0, :2].tolist()
    assert traces[0].answer == s.answer and traces[0].score == s.score and traces[0].token_ids == s.token_ids.tolist()
    assert usage == Usage(prompt_tokens=34, completion_tokens=20)
    assert ReplayGenerator(bank, shuffle=False).order("c") == list(range(6))


async def test_streaming_replay_charges_only_consumed_tokens(tmp_path):
    bank = make_bank(tmp_path / "bank", keys=("a",))
    gen = ReplayGenerator(bank, seed=0, stream_chunk=4)
    problem = Problem("a", "Question a?")
    ctx = tts.Context(problem, gen, tts.Accountant(), sampling=tts.Sampling(max_tokens=32))
    agen = ctx.stream(ctx.request(1, logprobs=1))
    seen = []
    async for t in agen:
        seen.append((t.num_tokens, t.text))
        if t.num_tokens >= 4:
            break
    await agen.aclose()
    first = bank.get("a").samples[gen.order("a")[0]]
    assert seen == [(4, first.text[: first.char_ends[3]])]  # text at the recorded token offsets
    assert ctx.usage.completion_tokens == 4 and ctx.usage.prompt_tokens == 17 and ctx.usage.generator_calls == 1
    # A stream run to the end is charged exactly its recorded tokens and ends as recorded.
    ctx2 = tts.Context(problem, gen, tts.Accountant(), sampling=tts.Sampling(max_tokens=32))
    async for t in ctx2.stream(ctx2.request(1, logprobs=0)):
        last = t
    second = bank.get("a").samples[gen.order("a")[1]]
    assert (last.text, last.num_tokens, last.finish_reason) == (second.text, 10, second.finish_reason)
    assert last.logprobs == second.logprobs.tolist() and last.top_logprobs == []
    assert ctx2.usage.completion_tokens == 10 and ctx2.accountant._reserved == Usage()


async def test_unreplayable_requests_fail_clearly(tmp_path):
    bank = make_bank(tmp_path / "bank")
    gen = ReplayGenerator(bank)
    with pytest.raises(TTSError, match="step-level continuation.*not replayable"):
        await gen.generate(request("a", prefix="Step 1."))
    with pytest.raises(TTSError, match="has 6 samples"):
        await gen.generate(request("a", n=7))
    with pytest.raises(TTSError, match="temperature=0.7.*temperature=1.0"):
        await gen.generate(request("a", temperature=1.0))
    with pytest.raises(TTSError, match="max_tokens=32.*max_tokens=64"):
        await gen.count_prompt_tokens(request("a", max_tokens=64))
    with pytest.raises(TTSError, match="logprobs=3.*logprobs=5"):
        await gen.generate(request("a", logprobs=5))
    with pytest.raises(TTSError, match="model 'm', not 'other'"):
        ReplayGenerator(bank, model="other")
    with pytest.raises(TTSError, match="top_p=1.0.*top_p=0.9"):
        ReplayGenerator(bank, sampling=tts.Sampling(max_tokens=32, top_p=0.9))
    with pytest.raises(TTSError, match="no problem with the question"):
        await gen.generate(request("zzz"))
    other_system = GenRequest([{"role": "user", "content": "Question a?"}], max_tokens=32)
    with pytest.raises(TTSError, match="system prompt"):
        await gen.generate(other_system)
    with pytest.raises(TTSError, match="prefix.*cannot be recorded"):
        await RecordingGenerator(ScriptedGenerator(["x"])).generate(request("a", prefix="p"))


class StreamTwo(tts.Strategy):
    """Streams two samples to the end (keeping every snapshot's text), then, with `abandon`, a
    third one that it drops after two tokens."""

    name = "stream_two"

    def __init__(self, abandon: bool):
        self.abandon = abandon

    async def solve(self, problem, ctx):
        traces, snaps = [], []
        for _ in range(2):
            async for t in ctx.stream(ctx.request(1)):
                snaps.append(t.text)
            traces.append(t)
        if self.abandon:
            agen = ctx.stream(ctx.request(1))
            async for t in agen:
                if t.num_tokens >= 2:
                    break
            await agen.aclose()
        return tts.Result(problem.id, traces[0].answer, traces, telemetry={"snaps": snaps})


async def test_streams_are_recorded_with_token_offsets_and_replayed_alike(tmp_path):
    gen = ScriptedGenerator(["we add\n\nthe two so \\boxed{4}", "it is \\boxed{5} surely"])
    problems = [Problem("p", "What is 2 + 2?", "4")]
    live = await record_run(problems, StreamTwo(abandon=True), gen, tmp_path / "b", sampling=tts.Sampling(max_tokens=8))
    bank = Bank(tmp_path / "b")
    samples = bank.get("p").samples
    assert len(samples) == 2  # the abandoned stream is not a sample
    assert samples[0].char_ends.tolist() == [len(x) for x in live[0].telemetry["snaps"][: samples[0].num_tokens]]
    replay = ReplayGenerator(bank, shuffle=False, stream_chunk=1)
    again = await tts.run_many(problems, StreamTwo(abandon=False), generator=replay, sampling=tts.Sampling(max_tokens=8))
    assert again[0].telemetry == live[0].telemetry and again[0].answer == live[0].answer == "4"
    assert live[0].usage.completion_tokens == again[0].usage.completion_tokens + 2


def test_record_command_errors_are_one_line(tmp_path, tiny_model_dir, shared_data):
    import importlib.util

    from test_cli import one_line_error, tts_cli

    assert "needs --task" in one_line_error(tts_cli("record", "--out", str(tmp_path / "b")))
    missing = tmp_path / "no-such-prm"
    err = one_line_error(tts_cli(
        "record", "--task", "gsm8k", "--data", str(shared_data / "gsm8k_test.jsonl"), "--limit", "1",
        "--model", str(tiny_model_dir), "--prm", str(missing), "--out", str(tmp_path / "b"),
    ))
    if importlib.util.find_spec("verifiers.prm") is None:
        assert "verifiers/prm.py" in err
    else:  # the PRM exists: its model is checked (and named) before any engine starts
        assert str(missing) in err


async def test_math100_import_reproduces_best_of_n_and_majority(shared_data, tmp_path):
    path = shared_data / "math100_qwen25math_8samples_rm.jsonl"
    rows = {f"math100/{r['idx']}": r for r in map(json.loads, path.read_text().splitlines())}
    bank = import_math100(path, tmp_path / "m100", tokenizer=None)
    assert len(bank) == 100 and bank.logprobs is None
    problems = bank.problems()
    gen = ReplayGenerator(bank, seed=0)
    # the bank's max_tokens (its longest sample): a smaller one cuts samples, as a live run would
    sampling = bank.sampling_defaults()
    assert sampling.max_tokens == max(s.num_tokens for r in bank.records() for s in r.samples) > 1024
    figures = {}
    for k in (1, 2, 4, 8):
        gen.reset()
        bon = await tts.run_many(problems, BestOfN(k), generator=gen, verifier=RecordedScore(), sampling=sampling)
        gen.reset()
        maj = await tts.run_many(problems, SelfConsistency(k), generator=gen, sampling=sampling)
        acc = {"bon": 0, "maj": 0, "bon_replay": 0, "maj_replay": 0}
        for p, rb, rm in zip(problems, bon, maj):
            row, idx = rows[p.id], gen.order(p.id)[:k]  # the same samples, in the same order
            best = max(idx, key=lambda i: row["pred_score"][i][0])  # first of equals, as BestOfN
            assert rb.answer == row["pred"][best], (p.id, k)
            majority, _ = await vote([row["pred"][i] for i in idx])
            assert rm.answer == majority, (p.id, k)
            acc["bon"] += row["score"][best]
            acc["maj"] += next(row["score"][i] for i in idx if row["pred"][i] == majority)
            # the replayed runs' own figures, from the bank's correctness of the traces they chose
            s = bank.get(p.id).samples
            acc["bon_replay"] += s[gen.order(p.id)[max(range(k), key=lambda j: rb.traces[j].score)]].correct
            acc["maj_replay"] += next(s[i].correct for i, x in zip(idx, rm.traces) if x.answer == rm.answer)
            assert rb.usage.completion_tokens == sum(s[i].num_tokens for i in idx)
        assert acc["bon"] == acc["bon_replay"] and acc["maj"] == acc["maj_replay"]
        figures[k] = acc
    # At k = 8 every sample is in, so the figures equal the file's own in file order, up to ties
    # (Best-of-N has no decisive score tie here; majority has vote ties, decided by order).
    all8 = {"bon": 0, "maj": 0}
    ties = 0
    for row in rows.values():
        best = max(range(8), key=lambda i: row["pred_score"][i][0])
        all8["bon"] += row["score"][best]
        majority, tally = await vote(row["pred"])
        all8["maj"] += next(c for a, c in zip(row["pred"], row["score"]) if a == majority)
        ties += sorted(tally.values())[-2:] in ([4.0, 4.0], [3.0, 3.0], [2.0, 2.0], [1.0, 1.0])
    assert figures[8]["bon"] == all8["bon"]
    assert abs(figures[8]["maj"] - all8["maj"]) <= ties
    assert figures[8]["bon"] > figures[1]["bon"]  # selection by the reward model helps


# -- the real engine ---------------------------------------------------------------------------
@pytest.mark.engine
async def test_live_run_recorded_then_replayed_identically(vllm_generator, tmp_path):
    problems = [Problem(f"q{i}", f"What is {i} + {i + 1}? Explain.", str(2 * i + 1)) for i in range(3)]
    sampling = tts.Sampling(max_tokens=16, temperature=1.0)
    # 1. tts record's function: 3 problems x 4 samples, top-2 logprobs.
    bank = await record_bank(problems, vllm_generator, tmp_path / "rec", n=4, sampling=sampling, logprobs=2)
    assert bank.stats()["samples"] == 12 and bank.model == vllm_generator.model
    for p, r in zip(problems, bank.records()):
        assert r.prompt_tokens == await vllm_generator.count_prompt_tokens(GenRequest(p.messages()))
        for s in r.samples:
            assert s.num_tokens == len(s.token_ids) == len(s.logprobs) == s.top_logprobs.shape[0] > 0
            assert s.top_logprobs.shape[1] == 2 and (s.top_logprobs[:, 0] >= s.top_logprobs[:, 1]).all()
    # 2. Strategies run live while recording, then replayed in recorded order: same answers, same
    #    scores (float32 logprobs are exact), same token charges.
    for name, strategy, verifier in (
        ("sc", SelfConsistency(4), None),
        ("bon", BestOfN(4), Confidence("self_certainty", top_k=2)),
    ):
        live = await record_run(problems, strategy, vllm_generator, tmp_path / name, sampling=sampling,
                                logprobs=2, verifier=verifier)
        replay = ReplayGenerator(tmp_path / name, shuffle=False, sampling=sampling, model=vllm_generator.model)
        again = await tts.run_many(problems, strategy, generator=replay, verifier=verifier, sampling=sampling)
        for a, b in zip(live, again):
            assert a.answer == b.answer and a.telemetry == b.telemetry, name
            assert [t.text for t in a.traces] == [t.text for t in b.traces]
            assert [t.score for t in a.traces] == [t.score for t in b.traces]
            assert a.usage.completion_tokens == b.usage.completion_tokens > 0
            assert a.usage.prompt_tokens == b.usage.prompt_tokens > 0
            # a replay is keyed apart from the live run it reproduces (RunSpec's backend identity)
            assert a.config_hash != b.config_hash
