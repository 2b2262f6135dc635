"""`ReplayGenerator`: serves generation requests from a recorded bank (see `tts.bank`), so any
sample-based strategy re-runs at no generation cost, deterministically.

- Requests are matched to problems by their messages: the user question (and the system prompt
  must be the one recorded).
- Within a run, each problem's samples are served without replacement in a seeded order: the
  permutation `random.Random(f"{seed}:{problem_key}")` shuffles (`shuffle=False`: recorded order,
  which replays a recorded strategy run exactly). `reset()` starts a new run.
- Streams replay the recorded tokens in chunks of `stream_chunk` tokens, every stream yielding to
  the event loop between chunks, so concurrent streams advance in lockstep like a batching engine;
  text is revealed at the recorded token offsets when the bank has them (recorded from streams),
  else proportionally to tokens. The accountant therefore charges exactly the tokens consumed,
  and an abandoned stream only up to where it was abandoned. Since every stream is known up
  front, `stream_plan` tells what a stream will deliver without streaming it (`plans_streams`):
  first-finish's race is then computed (`Streams.race`), with the same traces and charges.
- A request's max_tokens holds: a sample recorded longer (a bank imported without its
  max_tokens) is served cut at max_tokens with finish reason "length", as the live model would
  have returned it (`_cut`), so no call returns more than the accountant reserved for it.
- Usage: prompt tokens as recorded (per sample), completion tokens as served; cached tokens are
  reported as 0 (prefix-cache hits belong to the live run's cache state, not to the samples; the
  engine-reported totals are kept in the bank's records for reference).
- Replayed traces carry the recorded answer (what the recording task extracted) and, with
  `prefill_scores`, the recorded outcome score in `trace.score` (and per-step PRM scores in
  `trace.steps`), which `verifiers.recorded.RecordedScore` returns; a verifier the strategy runs
  overwrites them as usual.

Not replayable, with a TTSError saying so: step-level continuation (a request with a prefix),
more samples than recorded, and requests whose model or sampling differ from the bank's.
Continuations can instead go to a live `continuation` generator (the bank's model, served live):
answer probes of DeepPrune and certainty probing then run on recorded traces, each probe
generated and charged for real while the traces themselves cost nothing to produce. With one,
every request the bank does not hold goes to it: a prefix, or a conversation whose last user
turn is no recorded question (a repair loop's feedback turn, a critique), so a strategy's first
samples replay and its follow-up turns are generated live.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tts.bank import Bank, BankRecord, RecordedTrace
from tts.errors import TTSError
from tts.interfaces import Generator, StreamPlan
from tts.options import ModelOptions, SamplingOptions
from tts.spec import BackendId
from tts.types import GenRequest, Step, Trace, Usage

_SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens")


class ReplayGenerator(Generator):
    """A Generator over a bank.

    `model=` / `sampling=` (a `tts.Sampling`, or a dict of temperature / top_p / max_tokens) state
    what the caller expects the bank to hold; a bank recorded otherwise is a TTSError. `name`
    overrides the model name results are recorded under (default: the bank's model, so replayed
    results hash like live ones of the same configuration).
    """

    kind = "replay"
    realtime = False  # traces come from the bank: no clock runs while a stream waits
    plans_streams = True  # and streams are known before they are read (`stream_plan`)

    def __init__(
        self,
        bank: Bank | str | Path,
        seed: int = 0,
        model: str | None = None,
        sampling: Any = None,
        *,
        shuffle: bool = True,
        stream_chunk: int = 4,
        prefill_scores: bool = True,
        recorded_answers: bool = True,
        name: str | None = None,
        continuation: Generator | None = None,
    ):
        self.bank = bank if isinstance(bank, Bank) else Bank(bank)
        if stream_chunk < 1:
            raise ValueError("stream_chunk must be >= 1")
        if model is not None and model != self.bank.model:
            raise TTSError(f"bank {self.bank.path} was recorded with model {self.bank.model!r}, not {model!r}")
        if sampling is not None:
            want = sampling if isinstance(sampling, dict) else {f: getattr(sampling, f) for f in _SAMPLING_FIELDS}
            for f, v in want.items():
                self._check_field(f, v)
        self.model = name or self.bank.model
        self.num_params = self.bank.manifest.get("num_params")
        self.seed = seed
        self.shuffle = shuffle
        self.stream_chunk = stream_chunk
        self.prefill_scores = prefill_scores
        self.recorded_answers = recorded_answers
        self.continuation = continuation
        self._records: dict[str, BankRecord] = {}
        self._keys: dict[str, str] = {}  # question text -> key
        self._perm: dict[tuple[int, str], list[int]] = {}  # (seed, key) -> order
        self._served: dict[str, list[int]] = {}
        self._ok: set[tuple] = set()  # request shapes already validated

    @staticmethod
    def open_bank(options: ModelOptions) -> Bank:
        """The bank `--backend replay` serves from (TTSError when missing or unreadable)."""
        if not options.bank:
            raise TTSError("--backend replay needs --bank DIR (a bank from `tts record`)")
        return Bank(options.bank)

    @classmethod
    def from_options(cls, options: ModelOptions, sampling: SamplingOptions, seed: int) -> "ReplayGenerator":
        """A replay of `options.bank`; the sampling given must be the bank's (a mismatch is a
        TTSError naming both values), what is not given is the bank's."""
        bank = cls.open_bank(options)
        return cls(bank, seed=seed, sampling=sampling.resolve(bank.sampling))

    @classmethod
    def identity_of(cls, options: ModelOptions) -> BackendId:
        bank = cls.open_bank(options)
        return BackendId(kind=cls.kind, model=str(bank.model), bank=bank.path.name)

    @property
    def identity(self) -> BackendId:
        """A replay is keyed by the bank's model and its folder, never as a live run."""
        return BackendId(kind=self.kind, model=str(self.bank.model), bank=self.bank.path.name)

    # -- runs ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start a new run: every problem's samples are available again (in a new order when
        `seed` changes)."""
        if seed is not None:
            self.seed = seed
        self._served.clear()

    def for_run(self, seed: int) -> "ReplayGenerator":
        """A view of this replay for one run: the same bank (and caches), every sample available
        again, served in `seed`'s order; so a problem asked again replays from the start, and
        concurrent runs (a server's requests) never take each other's samples."""
        view = copy.copy(self)
        view.seed, view._served = seed, {}
        return view

    def order(self, key: str) -> list[int]:
        """The order in which problem `key`'s samples are served in a run (sample indices)."""
        perm = self._perm.get((self.seed, key))
        if perm is None:
            perm = list(range(self.bank.num_samples(key)))
            if self.shuffle:
                random.Random(f"{self.seed}:{key}").shuffle(perm)
            self._perm[(self.seed, key)] = perm
        return perm

    def served(self, key: str) -> list[int]:
        """The sample indices served for `key` so far in this run, in order."""
        return list(self._served.get(key, ()))

    def record(self, key: str) -> BankRecord:
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = self.bank.get(key)
        return rec

    # -- request checks ----------------------------------------------------------------------
    def _check_field(self, f: str, v: Any) -> None:
        # max_tokens as recorded: a bank that does not know it (an import) serves any request,
        # its samples cut at the request's max_tokens (`_trace`)
        have = self.bank.recorded_max_tokens if f == "max_tokens" else self.bank.sampling.get(f)
        if have is not None and v != have:
            raise TTSError(f"bank {self.bank.path} was recorded with {f}={have}, the request asks {f}={v}; "
                           f"replay needs the bank's sampling (run with sampling=bank.sampling_defaults())")

    def _check(self, req: GenRequest) -> None:
        shape = (req.temperature, req.top_p, req.max_tokens, tuple(req.stop), req.logprobs)
        if shape in self._ok:
            return
        for f in _SAMPLING_FIELDS:
            self._check_field(f, getattr(req, f))
        stop = self.bank.sampling.get("stop")
        if stop is not None and tuple(req.stop) != tuple(stop):
            raise TTSError(f"bank {self.bank.path} was recorded with stop={list(stop)}, the request asks "
                           f"stop={list(req.stop)}; stop strings cannot be replayed differently")
        k = self.bank.logprobs
        if req.logprobs is not None and (k is None or req.logprobs > k):
            have = "no logprobs" if k is None else f"logprobs={k}"
            raise TTSError(f"bank {self.bank.path} was recorded with {have}, the request asks "
                           f"logprobs={req.logprobs}; record the bank with --logprobs {req.logprobs} or more")
        self._ok.add(shape)

    def _problem(self, req: GenRequest) -> BankRecord:
        if req.prefix:
            raise TTSError("step-level continuation (a request with a prefix) is not replayable: a bank holds "
                           "whole samples; run step-level search on a live generator, or give ReplayGenerator(continuation=GENERATOR) a live "
                           "generator of the bank's model for continuations (answer probes)")
        self._check(req)
        question = next((m["content"] for m in reversed(req.messages) if m.get("role") == "user"), None)
        if question is None:
            raise TTSError("a replayed request needs a user message (the question) to find its problem")
        key = self._keys.get(question)
        if key is None:
            key = self.bank.find(question)
            if key is None:
                raise TTSError(f"bank {self.bank.path} has no problem with the question {question[:80]!r}; "
                               "replay the problems the bank was recorded on (Bank.problems())")
            self._keys[question] = key
        rec = self.record(key)
        system = next((m["content"] for m in req.messages if m.get("role") == "system"), None)
        if system != rec.system:
            raise TTSError(f"bank {self.bank.path} recorded problem {key!r} with system prompt {rec.system!r}; "
                           f"the request has {system!r} (use the recording task's prompt)")
        return rec

    def _take(self, rec: BankRecord, n: int) -> list[RecordedTrace]:
        served = self._served.setdefault(rec.key, [])
        have = len(rec.samples)
        if len(served) + n > have:
            raise TTSError(f"bank {self.bank.path} has {have} samples of problem {rec.key!r}; this run already "
                           f"took {len(served)} and asks {n} more (use at most {have} per problem, or reset())")
        order = self.order(rec.key)
        picked = order[len(served) : len(served) + n]
        served.extend(picked)
        return [rec.samples[i] for i in picked]

    def _live(self, req: GenRequest) -> bool:
        """Whether `req` goes to the continuation generator: one is given and the bank does not
        hold the request (a prefix to continue, or a last user turn that is no recorded question)."""
        if self.continuation is None:
            return False
        if req.prefix:
            return True
        question = next((m["content"] for m in reversed(req.messages) if m.get("role") == "user"), None)
        return question is not None and question not in self._keys and self.bank.find(question) is None

    # -- the Generator interface -------------------------------------------------------------
    async def count_prompt_tokens(self, req: GenRequest) -> int:
        if self._live(req):
            return await self.continuation.count_prompt_tokens(req)
        return self._problem(req).prompt_tokens

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        if self._live(req):
            return await self.continuation.generate(req)
        rec = self._problem(req)
        samples = self._take(rec, req.n)
        traces = [self._trace(s, req) for s in samples]
        return traces, Usage(
            prompt_tokens=rec.prompt_tokens * req.n,
            completion_tokens=sum(t.num_tokens for t in traces),
        )

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """Yields the same Trace object, grown in place (as the live backends do)."""
        if self._live(req):
            async for item in self.continuation.stream(req):
                yield item
            return
        if req.n != 1:
            raise ValueError("stream() samples one trace; use n=1 and start several streams")
        rec = self._problem(req)
        (s,) = self._take(rec, 1)
        full = self._trace(s, req)
        total, text = full.num_tokens, full.text
        ends = s.char_ends[:total].tolist() if s.char_ends is not None and len(s.char_ends) == s.num_tokens else None
        trace = Trace(text="", num_tokens=0, prefix=req.prefix)
        if total == 0:
            yield full, Usage(prompt_tokens=rec.prompt_tokens)
            return
        done = 0
        while done < total:
            if done:
                await asyncio.sleep(0)  # let the other streams advance: lockstep, like a batch
            end = min(done + self.stream_chunk, total)
            trace.num_tokens = end
            if full.token_ids:
                trace.token_ids.extend(full.token_ids[done:end])
            if full.logprobs:
                trace.logprobs.extend(full.logprobs[done:end])
            if full.top_logprobs:
                trace.top_logprobs.extend(full.top_logprobs[done:end])
            if end == total:
                trace.text = text
                trace.finish_reason = full.finish_reason
                trace.answer, trace.score, trace.steps = full.answer, full.score, full.steps
            else:
                trace.text = text[: ends[end - 1]] if ends is not None else text[: len(text) * end // total]
            done = end
            yield trace, Usage(prompt_tokens=rec.prompt_tokens, completion_tokens=end)

    def stream_plan(self, req: GenRequest) -> StreamPlan:
        """The stream `stream(req)` would deliver (it takes the sample alike), unread."""
        if req.n != 1:
            raise ValueError("stream() samples one trace; use n=1 and start several streams")
        rec = self._problem(req)
        (s,) = self._take(rec, 1)
        return _Plan(self._trace(s, req), s, self.stream_chunk, rec.prompt_tokens)

    def _trace(self, s: RecordedTrace, req: GenRequest) -> Trace:
        if s.num_tokens > req.max_tokens:
            return self._cut(s, req)
        t = Trace(text=s.text, num_tokens=s.num_tokens, finish_reason=s.finish_reason, prefix=req.prefix)  # type: ignore[arg-type]
        if s.token_ids is not None:
            t.token_ids = s.token_ids.tolist()
        if self.recorded_answers:
            t.answer = s.answer
        self._add_logprobs(t, s, req, s.num_tokens)
        if self.prefill_scores:
            t.score = s.score
            if s.step_scores is not None:
                t.steps = [Step(txt, 0, float(v)) for txt, v in zip(s.steps(), s.step_scores.tolist())]
        return t

    def _cut(self, s: RecordedTrace, req: GenRequest) -> Trace:
        """A sample recorded longer than the request's max_tokens, as the live model would have
        returned it: its first max_tokens tokens, finish reason "length". Sampling is token by
        token, so a smaller max_tokens only cuts the same sample; a backend never returns more
        than max_tokens, which is the worst case the accountant reserves. The text is cut at the
        recorded token offsets (banks recorded from streams), else proportionally to tokens (an
        approximation of where the token boundary falls). The recorded answer and scores belong
        to the whole sample: the answer is extracted again from the cut text (by the Context),
        and the cut trace has no recorded score (a verifier must score it)."""
        m = req.max_tokens
        if s.char_ends is not None and len(s.char_ends) == s.num_tokens:
            text = s.text[: int(s.char_ends[m - 1])] if m > 0 else ""
        else:
            text = s.text[: len(s.text) * m // max(s.num_tokens, 1)]
        t = Trace(text=text, num_tokens=m, finish_reason="length", prefix=req.prefix)
        if s.token_ids is not None:
            t.token_ids = s.token_ids[:m].tolist()
        self._add_logprobs(t, s, req, m)
        return t

    @staticmethod
    def _add_logprobs(t: Trace, s: RecordedTrace, req: GenRequest, m: int) -> None:
        if req.logprobs is not None and s.logprobs is not None:
            t.logprobs = s.logprobs[:m].tolist()
            if req.logprobs > 0:
                t.top_logprobs = s.top_rows(req.logprobs)[:m]


class _Plan(StreamPlan):
    """A replayed stream, unread: snapshot i is what `ReplayGenerator.stream` yields i-th (its
    chunks of `chunk` tokens, the text revealed alike; one snapshot for an empty sample)."""

    def __init__(self, full: Trace, s: RecordedTrace, chunk: int, prompt_tokens: int):
        self.full, self.chunk, self.prompt_tokens = full, chunk, prompt_tokens
        self.snapshots = max(1, -(-full.num_tokens // chunk))
        ok = s.char_ends is not None and len(s.char_ends) == s.num_tokens
        self._ends = s.char_ends if ok else None

    def tokens(self, i: int) -> int:
        return min(i * self.chunk, self.full.num_tokens)

    def trace(self, i: int) -> Trace:
        full, end = self.full, self.tokens(i)
        if i >= self.snapshots:
            return full
        total, text = full.num_tokens, full.text
        t = Trace(text=text[: int(self._ends[end - 1])] if self._ends is not None else text[: len(text) * end // total],
                  num_tokens=end, prefix=full.prefix)
        t.token_ids, t.logprobs, t.top_logprobs = full.token_ids[:end], full.logprobs[:end], full.top_logprobs[:end]
        return t
