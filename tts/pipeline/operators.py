"""The operators a pipeline is made of: generate, critique, refine, fuse, rank, verify, vote and
revise. Each is a small pydantic model (its configuration: what a sweep file writes and the run
spec hashes) with one coroutine, `run(work)`, that changes the candidate pool of one problem.

Every model call an operator makes goes through the run's context (`Work.ask` -> `ctx.sample`;
a verifier's calls through `ctx.judge`/`ctx.verify`), so the accountant reserves and charges it
like any strategy's: nothing is counted here. A call the budget refuses is not made; the
operator keeps what it has, and the pipeline stops after that stage and answers from its pool
(`stopped_by="budget"`). A backend fault propagates: the problem becomes a failed record.

Order: every operator leaves the pool best-first as far as it knows (generate puts the inner
strategy's chosen answer first; rank, verify and vote sort), so "the first k" (`top`) means the
best k where a ranking ran, and the arrival order otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr,
                      model_validator)

from tts.answers.mathverify import group_answers
from tts.context import Context, Verifier
from tts.errors import BudgetExceeded, TTSError
from tts.options import Count, Probability
from tts.pipeline import prompts
from tts.registry import lookup
from tts.types import Problem, Trace

Temperature = Annotated[float, Field(ge=0, allow_inf_nan=False)]


@dataclass(slots=True)
class Candidate:
    """One candidate solution in a pipeline's pool: its trace, and what the stages learnt of it."""

    trace: Trace
    made_by: str = "generate"
    critique: str | None = None
    verdict: bool | None = None  # the critique's last-line verdict (True: "correct"), when it gave one
    score: float | None = None  # a verifier's score, or a fitness

    @property
    def text(self) -> str:
        """What other calls are shown: a reasoning model's answer part, else the whole text."""
        t = self.trace
        return t.answer_part if t.answer_part is not None else t.text

    @property
    def answer(self) -> str | None:
        return self.trace.answer


@dataclass
class Work:
    """One problem being solved by a pipeline: the context, the pool, every candidate trace made
    (the Result's traces), a pool-wide note (a joint critique no candidate could be matched to),
    and whether the budget refused or cut a call."""

    ctx: Context
    pool: list[Candidate] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    note: str | None = None
    budget: bool = False
    telemetry: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> Problem:
        return self.ctx.problem

    def made(self, traces: Sequence[Trace], by: str) -> list[Candidate]:
        self.traces.extend(traces)
        return [Candidate(t, by) for t in traces]

    def count(self, key: str, k: int = 1) -> None:
        self.telemetry[key] = self.telemetry.get(key, 0) + k

    async def ask(self, content: str, n: int = 1, *, candidate: bool, temperature: float | None = None,
                  max_tokens: int | None = None) -> list[Trace]:
        """Up to `n` samples of one user message through the context. `candidate`: the answer is
        a new solution, so the task's system prompt (its answer format) comes first and the run
        verifier's logprobs are asked for; otherwise (a critique, a judgment) neither. Fewer
        than `n` (none) when the budget refuses; a backend fault propagates."""
        ctx = self.ctx
        msgs = [{"role": "system", "content": ctx.system_prompt}] if candidate and ctx.system_prompt else []
        msgs.append({"role": "user", "content": content})
        overrides: dict[str, Any] = {"messages": msgs}
        if not candidate:
            overrides["logprobs"] = None
        if temperature is not None:
            overrides["temperature"] = temperature
        if max_tokens is not None:
            overrides["max_tokens"] = max_tokens
        try:
            traces, stopped = await ctx.sample(n, **overrides)
        except BudgetExceeded:  # refused at dispatch: a concurrent call took what was left
            self.budget = True
            return []
        self.budget |= stopped == "budget"
        return traces


async def together(calls: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run calls concurrently; a fault in one cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in calls]  # type: ignore[arg-type]
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]


def numbered(cands: Sequence[Candidate], *, start: int = 1, brackets: bool = True, critiques: bool = False,
             scores: bool = False) -> str:
    """Candidates as one prompt block: `[1] text`, with its critique or score where asked."""
    parts = []
    for i, c in enumerate(cands, start):
        head = f"[{i}]" if brackets else f"{i})"
        if scores and c.score is not None:
            head += f" (fitness {c.score:.2f})"
        part = f"{head} {c.text.strip()}"
        if critiques and c.critique:
            part += f"\n\nCritique of [{i}]:\n{c.critique.strip()}"
        parts.append(part)
    return "\n\n".join(parts)


_VERDICT = re.compile(r"verdict\W{0,3}\s*(correct|incorrect|right|wrong)", re.I)
_JUDGMENT = re.compile(r"judgment\W{0,3}\s*\[?\s*(\d+)", re.I)
_RANKED = re.compile(r"\[(\d+)\]")


def verdict_of(text: str) -> bool | None:
    """The last `Verdict: correct|incorrect` in a critique (None when it gave none)."""
    found = _VERDICT.findall(text)
    return None if not found else found[-1].lower() in ("correct", "right")


def judgment_of(text: str, count: int) -> int | None:
    """GenSelect's last `Judgment: [IDX]` (0-based), when it names one of `count` candidates."""
    found = [int(x) for x in _JUDGMENT.findall(text)]
    return found[-1] if found and 0 <= found[-1] < count else None


def ranking_of(text: str, count: int) -> tuple[list[int], bool]:
    """Archon's ranker output: the 1-based identifiers of the 'Answer:' line (else the first line
    with one), missing ones appended in their order (as Archon's `extract_ranking` does).
    Returns 0-based indices and whether the model named all of them."""
    lines = text.splitlines()
    line = next((ln for ln in lines if ln.strip().lower().startswith("answer") and _RANKED.search(ln)),
                next((ln for ln in lines if _RANKED.search(ln)), ""))
    order: list[int] = []
    for x in _RANKED.findall(line):
        i = int(x) - 1
        if 0 <= i < count and i not in order:
            order.append(i)
    complete = len(order) == count
    return order + [i for i in range(count) if i not in order], complete


def split_joint(text: str, count: int) -> list[str] | None:
    """A joint critique cut into one piece per candidate at its `[i]` markers (at a line's
    start), when every candidate 1..count has one; else None (the whole text stays a pool note)."""
    pieces = re.split(r"^\W*\[(\d+)\]", text, flags=re.M)
    found: dict[int, str] = {}
    for num, body in zip(pieces[1::2], pieces[2::2]):
        found.setdefault(int(num), body.strip())
    if set(found) != set(range(1, count + 1)):
        return None
    return [found[i] for i in range(1, count + 1)]


def prompt_field(kind: str) -> Any:
    """A stage's `prompt` field: None (the default prompt) or one checked against its fields."""
    return Annotated[str | None, AfterValidator(lambda p: None if p is None else prompts.check(p, kind))]


# -- the operators ----------------------------------------------------------------------------
class Op(BaseModel):
    """A pipeline stage. Subclasses declare `op` (the stage's name in YAML) and `run`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    op: str

    async def run(self, work: Work) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the stage built (a verifier's engine)."""


class Calls(Op):
    """A stage that calls the model: its sampling (None: the run's) and its prompt (None: the
    default in `tts.pipeline.prompts`)."""

    temperature: Temperature | None = None
    max_tokens: Count | None = None

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


class Generate(Op):
    """Candidates from any registered strategy (its traces; the answer it chose first):
    `Generate(SelfConsistency(8))`, or `{op: generate, strategy: beam_search, n: 4, params: {...}}`;
    without `n`, the pipeline's `n`. Another generate stage adds to the pool (an ensemble)."""

    op: Literal["generate"] = "generate"
    strategy: str = "self_consistency"
    n: Count | None = None  # the strategy's size (None: the pipeline's n)
    params: dict[str, Any] = Field(default_factory=dict)
    temperature: Temperature | None = None
    max_tokens: Count | None = None
    _built: Any = PrivateAttr(None)

    def __init__(self, source: Any = None, /, **data: Any):
        if source is not None:  # Generate(SelfConsistency(8)): a strategy object, by name and config
            cfg = dict(source.config())
            size = type(source).size_param()
            data = {"strategy": source.name, "n": cfg.pop(size) if size in cfg else None, "params": cfg, **data}
        super().__init__(**data)

    @model_validator(mode="after")
    def _known(self) -> "Generate":
        self.build()  # an unknown strategy or a bad parameter fails when the stage is written
        return self

    def build(self) -> Any:
        if self._built is None:
            factory = lookup("strategy", self.strategy)
            size = factory.size_param()
            kwargs = dict(self.params)
            if self.n is not None and size is not None:
                kwargs[size] = self.n
            self._built = factory(**kwargs)
        return self._built

    async def run(self, work: Work) -> None:
        ctx = work.ctx
        saved = ctx.sampling
        ctx.sampling = replace(saved, **{k: v for k, v in (("temperature", self.temperature),
                                                            ("max_tokens", self.max_tokens)) if v is not None})
        try:
            result = await self.build().solve(work.problem, ctx)
        except BudgetExceeded:
            work.budget = True
            return
        finally:
            ctx.sampling = saved
        work.budget |= result.stopped_by == "budget"
        chosen = result.answer
        traces = sorted(result.traces, key=lambda t: chosen is None or t.answer != chosen)  # stable
        work.pool += work.made(traces, "generate")

    async def close(self) -> None:
        close = getattr(self._built, "close", None)
        if close is not None:
            await close()


class Critique(Calls):
    """The model reviews candidates (Self-Refine's feedback, Mind Evolution's critic): one call
    per candidate not critiqued yet, its last line a verdict; `joint`: one call reviews all of them (Archon's
    critic, optillm's mixture-of-agents), cut into per-candidate critiques at their `[i]` marks
    when it names every one, else kept as a note every later stage shows. `top`: the first k."""

    op: Literal["critique"] = "critique"
    joint: bool = False
    top: Count | None = None
    prompt: prompt_field("critique") = None  # type: ignore[valid-type]
    joint_prompt: prompt_field("joint_critique") = None  # type: ignore[valid-type]

    async def run(self, work: Work) -> None:
        cands = work.pool[: self.top]
        if not cands:
            return
        q = work.problem.question
        if not self.joint:  # a candidate critiqued before and kept (called correct) is not asked again
            cands = [c for c in cands if c.critique is None]
        if self.joint:
            text = self.joint_prompt or prompts.JOINT_CRITIQUE
            out = await work.ask(text.format(question=q, candidates=numbered(cands), count=len(cands)),
                                 candidate=False, **self.sampling())
            if not out:
                return
            pieces = split_joint(out[0].text, len(cands))
            if pieces is None:
                work.note = out[0].text
                work.count("joint_critique_unsplit")
            else:
                for c, piece in zip(cands, pieces):
                    c.critique, c.verdict = piece, verdict_of(piece)
            return
        text = self.prompt or prompts.CRITIQUE
        outs = await together([work.ask(text.format(question=q, candidate=c.text), candidate=False, **self.sampling())
                               for c in cands])
        for c, out in zip(cands, outs):
            if out:
                c.critique, c.verdict = out[0].text, verdict_of(out[0].text)


class Refine(Calls):
    """A candidate and its critique -> a new candidate (Self-Refine's refine step, Mind
    Evolution's author). `keep_correct`: a candidate its critique calls correct is kept as it is,
    with no call (Self-Refine's stopping rule), unless it has no final answer (an unfinished
    solution is never correct, whatever the critic says). `keep`: "replace" the candidate by its
    refinement, or keep "both". Candidates without a critique (none ran, or the budget refused
    it) stay."""

    op: Literal["refine"] = "refine"
    keep_correct: bool = True
    keep: Literal["replace", "both"] = "replace"
    prompt: prompt_field("refine") = None  # type: ignore[valid-type]

    def kept(self, c: Candidate) -> bool:
        return self.keep_correct and c.verdict is True and c.answer is not None

    async def run(self, work: Work) -> None:
        text = self.prompt or prompts.REFINE
        q = work.problem.question
        todo = [i for i, c in enumerate(work.pool) if (c.critique or work.note) and not self.kept(c)]
        work.count("refine_kept_correct", sum(1 for c in work.pool if self.kept(c)))
        outs = await together([work.ask(text.format(question=q, candidate=work.pool[i].text,
                                                    critique=work.pool[i].critique or work.note),
                                        candidate=True, **self.sampling()) for i in todo])
        pool = list(work.pool)
        for i, out in zip(todo, outs):
            if out:
                new = work.made(out, "refine")[0]
                pool[i] = new
                if self.keep == "both":
                    pool.append(work.pool[i])
        work.pool = pool
        work.note = None


class Fuse(Calls):
    """Several candidates -> `samples` synthesised ones (mixture-of-agents' aggregator; with
    samples > 1, one MoA layer of that width; Archon's fuser). `top`: fuse the first k (after a
    rank or verify stage: the best k). `critiques`: show each one's critique, when one ran."""

    op: Literal["fuse"] = "fuse"
    top: Count | None = None
    samples: Count = 1
    critiques: bool = True
    prompt: prompt_field("fuse") = None  # type: ignore[valid-type]

    async def run(self, work: Work) -> None:
        refs = work.pool[: self.top]
        if not refs:
            return
        block = numbered(refs, critiques=self.critiques)
        if self.critiques and work.note:
            block += f"\n\nCritique of the responses:\n{work.note.strip()}"
        text = (self.prompt or prompts.FUSE).format(question=work.problem.question, candidates=block, count=len(refs))
        out = await work.ask(text, self.samples, candidate=True, **self.sampling())
        if out:  # none: the budget refused it, and the pool stays as it was
            work.pool = work.made(out, "fuse")
            work.note = None


class Rank(Calls):
    """Generative selection. `method="select"`: GenSelect (NeMo-Skills): the model picks the best
    of a group of candidates ("Judgment: [IDX]"); more than `group` candidates play a knockout
    tournament (group=2: pairwise), `repeats` tournaments over random orders vote, and the
    candidates whose answer won most come first. `method="order"`: Archon's ranker, one call
    ordering all of them. `answered`: only candidates with a final answer take part (when any
    has one); the others follow, in their order: an unfinished solution never wins. Keeps the
    first `top`."""

    op: Literal["rank"] = "rank"
    method: Literal["select", "order"] = "select"
    top: Count = 1
    group: Annotated[int, Field(ge=2)] = 8
    repeats: Count = 1
    critiques: bool = True
    answered: bool = True
    prompt: prompt_field("select") = None  # type: ignore[valid-type]
    order_prompt: prompt_field("order") = None  # type: ignore[valid-type]

    async def run(self, work: Work) -> None:
        everyone = work.pool
        ranked = [c for c in everyone if c.answer is not None] if self.answered else list(everyone)
        if not ranked:
            ranked = list(everyone)
        rest = [c for c in everyone if all(c is not r for r in ranked)]
        work.count("rank_unanswered_out", len(rest))
        if len(ranked) > 1:
            ranked = await (self._order(work, ranked) if self.method == "order" else self._select(work, ranked))
        work.pool = (ranked + rest)[: self.top]

    async def _order(self, work: Work, pool: list[Candidate]) -> list[Candidate]:
        text = (self.order_prompt or prompts.ORDER).format(
            question=work.problem.question, candidates=numbered(pool, critiques=self.critiques), count=len(pool))
        out = await work.ask(text, candidate=False, **self.sampling())
        if not out:  # refused by the budget: the order stays
            return pool
        order, complete = ranking_of(out[0].text, len(pool))
        if not complete:
            work.count("rank_unparsed")
        return [pool[i] for i in order]

    async def _select(self, work: Work, pool: list[Candidate]) -> list[Candidate]:
        wins = [0] * len(pool)
        for winner in await together([self._tournament(work, pool) for _ in range(self.repeats)]):
            if winner is not None:
                wins[winner] += 1
        if not any(wins):  # every call refused by the budget: nothing learnt, the order stays
            return pool
        groups = await group_answers([c.answer for c in pool])
        by_group: dict[int | None, int] = {}
        for g, w in zip(groups, wins):
            by_group[g] = by_group.get(g, 0) + w
        key = lambda i: (-(by_group[groups[i]] if groups[i] is not None else wins[i]), -wins[i], i)  # noqa: E731
        work.telemetry.setdefault("select_wins", []).append(wins)
        return [pool[i] for i in sorted(range(len(pool)), key=key)]

    async def _tournament(self, work: Work, pool: list[Candidate]) -> int | None:
        """One knockout over a random order of `pool`: each group's call picks one winner (an
        unreadable judgment: the group's first, in the random order), winners meet next round."""
        alive = list(range(len(pool)))
        work.ctx.rng.shuffle(alive)
        text = self.prompt or prompts.SELECT
        while len(alive) > 1:
            groups = [alive[i: i + self.group] for i in range(0, len(alive), self.group)]

            async def pick(g: list[int]) -> int | None:
                if len(g) == 1:
                    return g[0]
                cands = [pool[i] for i in g]
                out = await work.ask(text.format(question=work.problem.question, count=len(g), max_index=len(g) - 1,
                                                 candidates=numbered(cands, start=0, brackets=False,
                                                                     critiques=self.critiques)),
                                     candidate=False, **self.sampling())
                if not out:
                    return None
                j = judgment_of(out[0].text, len(g))
                if j is None:
                    work.count("select_unparsed")
                    j = 0
                return g[j]

            winners = await together([pick(g) for g in groups])
            if any(w is None for w in winners):  # the budget refused a comparison: no champion
                return None
            alive = winners
        return alive[0]


class Verify(Op):
    """Score every candidate with a verifier and sort by score: `verifier` names a registered one
    (built with the run's generator: `llm_judge`, `self_eval`, a code task's test runner; a reward
    model needs `verifier_model`), None uses the run's `--verifier`. `threshold`: keep those
    scoring at least this (all when none does, as Archon's verifier passes everything on then).
    `top`: keep the best k."""

    op: Literal["verify"] = "verify"
    verifier: str | None = None
    verifier_model: str | None = None
    threshold: Probability | None = None
    top: Count | None = None
    _built: dict[int, Verifier] = PrivateAttr(default_factory=dict)

    def __init__(self, verifier: str | None = None, /, **data: Any):
        if verifier is not None:  # Verify("llm_judge")
            data["verifier"] = verifier
        super().__init__(**data)

    @model_validator(mode="after")
    def _known(self) -> "Verify":
        if self.verifier is not None:
            lookup("verifier", self.verifier)
        return self

    def verifier_for(self, ctx: Context) -> Verifier:
        if self.verifier is None:
            if ctx.verifier is None:
                raise TTSError("a verify stage without a verifier name uses the run's --verifier, and none is set: "
                               "name one (verifier: llm_judge) or pass --verifier")
            return ctx.verifier
        key = id(ctx.generator)
        if key not in self._built:  # built once per generator, with it (a judge) or its model
            factory = lookup("verifier", self.verifier)
            accepted = inspect.signature(factory).parameters
            kwargs = {k: v for k, v in (("model", self.verifier_model), ("generator", ctx.generator))
                      if k in accepted and v is not None}
            self._built[key] = factory(**kwargs)
        return self._built[key]

    async def run(self, work: Work) -> None:
        if not work.pool:
            return
        verifier = self.verifier_for(work.ctx)
        try:
            scores = await verifier.score(work.ctx, [c.trace for c in work.pool])
        except BudgetExceeded:
            work.budget = True
            return
        for c, s in zip(work.pool, scores):
            c.score = c.trace.score = s.value
        ranked = sorted(work.pool, key=lambda c: -c.score)  # type: ignore[operator]  # stable
        if self.threshold is not None:
            passed = [c for c in ranked if c.score >= self.threshold]  # type: ignore[operator]
            work.count("verify_none_passed", 0 if passed else 1)
            ranked = passed or ranked
        work.pool = ranked[: self.top]

    async def close(self) -> None:
        for v in self._built.values():
            await v.close()
        self._built.clear()


class Vote(Op):
    """Majority vote over the pool's answers (grouped by math equivalence): the candidates of
    the winning answer first, then the next; `weighted` sums their scores instead of counting
    them (after a verify stage); `top` keeps the first k."""

    op: Literal["vote"] = "vote"
    weighted: bool = False
    top: Count | None = None

    async def run(self, work: Work) -> None:
        pool = work.pool
        groups = await group_answers([c.answer for c in pool])
        tally: dict[int, float] = {}
        for c, g in zip(pool, groups):
            if g is not None:
                tally[g] = tally.get(g, 0.0) + ((c.score or 0.0) if self.weighted else 1.0)
        key = lambda i: (-tally[groups[i]] if groups[i] is not None else 1.0, i)  # noqa: E731
        work.pool = [pool[i] for i in sorted(range(len(pool)), key=key)][: self.top]


class Revise(Calls):
    """Iterative Agent Decoding's step ("Review, Refine, Repeat"): the best- and worst-scored
    candidates, with their verifier scores, prompt `n` new candidates; `keep_best` keeps the best
    one so far in the pool beside them (the dynamic selection across iterations). Needs scores:
    a verify stage before it."""

    op: Literal["revise"] = "revise"
    n: Count = 4
    keep_best: bool = True
    prompt: prompt_field("revise") = None  # type: ignore[valid-type]

    async def run(self, work: Work) -> None:
        scored = [c for c in work.pool if c.score is not None]
        if not scored:
            return
        best = max(scored, key=lambda c: c.score)  # type: ignore[arg-type,return-value]
        worst = min(scored, key=lambda c: c.score)  # type: ignore[arg-type,return-value]
        text = (self.prompt or prompts.REVISE).format(question=work.problem.question, best=best.text,
                                                      worst=worst.text, best_score=best.score,
                                                      worst_score=worst.score)
        out = await work.ask(text, self.n, candidate=True, **self.sampling())
        if out:
            work.pool = ([best] if self.keep_best else []) + work.made(out, "revise")


OPERATORS = {cls.model_fields["op"].default: cls
             for cls in (Generate, Critique, Refine, Fuse, Rank, Verify, Vote, Revise)}  # name -> operator
Stage = Annotated[Generate | Critique | Refine | Fuse | Rank | Verify | Vote | Revise, Field(discriminator="op")]


def _parse(value: Any) -> Any:
    """A pipeline written as text (`--param stages='[{op: generate, n: 4}, {op: fuse}]'`): YAML
    (JSON is YAML), else the value as given."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"cannot read the stages as YAML/JSON: {' '.join(str(e).split())}") from None
    return value


def _check_order(stages: list[Op]) -> list[Op]:
    """What a pipeline needs of its order: candidates first; a refine after a critique; a revise
    after a verify (what they read)."""
    if not stages:
        raise ValueError("a pipeline needs at least one stage, the first a generate stage")
    if stages[0].op != "generate":
        raise ValueError(f"the first stage must be a generate stage (candidates to work on), not {stages[0].op}")
    seen: set[str] = set()
    for i, s in enumerate(stages):
        need = {"refine": "critique", "revise": "verify"}.get(s.op)
        if need is not None and need not in seen:
            raise ValueError(f"stage {i} ({s.op}) needs a {need} stage before it")
        seen.add(s.op)
    return stages


Stages = Annotated[list[Stage], BeforeValidator(_parse), AfterValidator(_check_order)]


def describe(stages: Sequence[Op]) -> str:
    """A short human label: `generate(self_consistency n=8) > critique > fuse(top=3)`; the
    settings that differ from the defaults, prompts left out."""
    parts = []
    for s in stages:
        shown = {k: v for k, v in s.model_dump(exclude_defaults=True, exclude={"op"}).items()
                 if not k.endswith("prompt")}
        if isinstance(s, Generate):
            shown = {"n": s.n, **{k: v for k, v in shown.items() if k not in ("strategy", "n", "params")}, **s.params}
            parts.append(f"generate({' '.join([s.strategy, *(f'{k}={v}' for k, v in shown.items())])})")
        else:
            parts.append(s.op + (f"({' '.join(f'{k}={v}' for k, v in shown.items())})" if shown else ""))
    return " > ".join(parts)
