"""Shared mechanics of step-level search: beam search, DVTS, A*-decoding, particle filtering,
MCTS, REBASE, φ-Decoding. (Over 400 lines: the search state and every call it makes —
expansion, pruning of equivalent steps, look-ahead, rollouts, scoring, selection, the result —
stay together, since each shares the budget-stop rule; the nodes and pure rules are in
`tts.search.paths`, the equivalence layer in `tts.search.prune`.)

A *partial solution* is the assistant text so far; a *step* is the text the model writes up to
the next `delimiter` (default a blank line, "\\n\\n"), or, with `tokens_per_step`, at most that
many tokens (whichever comes first; `delimiter=None`: token steps only, for models whose
reasoning has no blank lines, as its_hub's `tokens_per_step`). Every partial solution is a
`Node` of one search tree per problem, and the tree is what the strategies return as telemetry.

Expanding a node asks the engine to continue its text up to the next delimiter:
``ctx.request(k, prefix=node.prefix, stop=(delimiter,), max_tokens=tokens_per_step)``. The
engine drops the stop string from the text, so a child's solution is ``node.prefix + step`` and
its own continuation prefix adds the delimiter back; a step cut at `tokens_per_step` is
continued from its text as it is (nothing added), so a path's text is exactly what the model
wrote. All expansions of one search iteration go out
together (one request per distinct prefix, with n = the samples it needs), so the engine batches
them and serves the shared prefixes from its cache. `grow` (beam search, DVTS) also scores each
expansion as soon as its own samples arrive (one verifier call per expansion), so no beam waits
for the slowest; node ids then follow arrival order, the tree and every ranking do not change.

When is a path complete? The engine reports finish_reason "stop" both for the delimiter and for
end-of-sequence, and the stop string is not in the text, so the two cannot be told apart from a
`Trace`. The rule used here (the union of what the reference implementations do):

- the step hit its token limit (finish_reason "length"): complete, as in search-and-learn —
  except a step cut at `tokens_per_step`, which ends the step, not the path;
- the step is empty (the model stopped at once): complete, as in search-and-learn;
- the step contains a final answer (``ctx.extract(step)`` finds one, a ``\\boxed{}`` for math
  tasks): complete, as in the particle-filtering reference code (``"\\\\boxed" in response``), its
  successor its_hub (``stop_pattern=r"\\boxed"``) and search-and-learn's DVTS (``"boxed{" in
  text``);
- "abort" / "error" end the path with that reason;
- the last step a path may take (its `max_steps`-th) is generated without the step stop, to the
  end of sequence (or `ctx.sampling.max_tokens`), as search-and-learn's last iteration does; it
  ends the path ("stop", or "length" when cut), charged as any other call. Such a node's text
  may hold several steps; the verifier scores each of them. With `last_step="delimited"` (its_hub's
  rule, cheaper) it is a step like any other, and a path still open after it ends there
  unfinished ("max_steps").

A step that ended at end-of-sequence without an answer is therefore continued once more; the
model then usually stops at once (an empty step, complete), so the cost is one short call.
Without a delimiter (`delimiter=None`) "stop" can only be the end of sequence: complete.

EquivPruner (`prune_equivalent=JUDGE`, `tts.search.prune`): the open children of one expansion
that the judge calls equivalent are merged before they are scored; the first stands for the
others (`Node.merged`), which stay in the tree (`equivalent_to`) but leave the search.

Rankings of finished paths (`choose`, and the strategies' own) never prefer a path without an
answer over one with an answer: an answer first, then the score.

Scoring sends the verifier traces whose ``prefix + text`` is the whole partial solution (with a
look-ahead rollout appended when one is asked for). A process verifier returns one reward per
step (`Score.steps`) and an aggregate (`Score.value`): `Node.reward` is the reward of the latest
step, `Node.rewards` all of them, `Node.value` the verifier's aggregate. `aggregate(node, how)`
is search-and-learn's `agg_strategy` over `Node.rewards` ("last", "min", "prod"; an outcome
verifier without per-step rewards gives its value). `score(..., single_step=True)` sends the
whole partial solution as one step instead (newline runs collapsed to one "\\n", as the
particle-filtering reference's `outputs_is_single_step`), so a verifier that cuts steps at blank
lines returns one reward for the whole.

References and known deviations per strategy: docs/references.md.

Budget: every call goes through the context, which refuses calls that could exceed the budget.
A refused (or shrunk) expansion, rollout, judgement or scoring sets ``search.stopped =
"budget"``; strategies then stop and return their best answer so far.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import ClassVar

import networkx as nx

from tts.answers.voting import vote
from tts.context import Context
from tts.errors import BudgetExceeded, TTSError
from tts.options import Count, Delimiter, NonNegative, Share
from tts.registry import lookup
from tts.search.prune import EquivalencePruner
from tts.strategy import Strategy
from tts.search.paths import (
    AGGREGATES,
    DEFAULT_DELIMITER,
    SELECT,
    Aggregate,
    LastStep,
    Node,
    Select,
    aggregate,
    logit,
    rank_key,
    size_alias,
    softmax,
    spread,
    step_finish,
    validate_steps,
)
from tts.types import Problem, Result, Step, StoppedBy, Trace

__all__ = [  # what the strategies import from here (the shared rules live in tts.search.paths)
    "AGGREGATES", "DEFAULT_DELIMITER", "SELECT", "Aggregate", "BeamStrategy", "LastStep", "Node", "Select", "StepSearch",
    "StepStrategy", "aggregate", "logit", "rank_key", "size_alias", "softmax", "spread", "step_finish",
    "validate_steps",
]  # fmt: skip


class StepStrategy(Strategy):
    """What every step-level search shares: the step space (`max_steps`, `delimiter`,
    `tokens_per_step`, formerly `step_tokens`, still accepted) and EquivPruner
    (`prune_equivalent`: an equivalence judge's name, "math", "embedding" or "model";
    `prune_tau`: its threshold, by default the judge's own). Each search declares these
    parameters in its constructor and stores them as attributes; `search(ctx)` builds the
    problem's search state from them."""

    default_verifier = "llm_judge"  # the generator as its own step judge: no reward model needed
    aliases = {"step_tokens": "tokens_per_step"}
    # Searches whose results were keyed before `tokens_per_step` replaced `step_tokens` and the
    # pruning parameters came (see `config`).
    keyed_with_step_tokens: ClassVar[bool] = False
    max_steps: int
    delimiter: str | None
    tokens_per_step: int | None
    last_step: LastStep = "to_end"  # a search that offers the choice sets it in its constructor
    prune_equivalent: str | None = None
    prune_tau: float | None = None

    def set_steps(self, max_steps: int, delimiter: str | None, tokens_per_step: int | None,
                  prune_equivalent: str | None, prune_tau: float | None) -> None:
        """Store the parameters every search declares (the step space and EquivPruner), then
        check the whole configuration."""
        self.max_steps, self.delimiter, self.tokens_per_step = max_steps, delimiter, tokens_per_step
        self.prune_equivalent, self.prune_tau = prune_equivalent, prune_tau
        self.check()

    def search(self, ctx: Context, logprobs: int | None = None, scored: bool = True) -> "StepSearch":
        """This problem's search state, under the step rules these parameters set (`logprobs`:
        ask each step's token logprobs, for a search that reads them; `scored`: whether it
        scores steps with the verifier, which it then needs)."""
        pruner = None
        if self.prune_equivalent is not None:
            judge = getattr(self, "_judge", None)
            if judge is None:
                judge = self._judge = lookup("judge", self.prune_equivalent)()
            pruner = EquivalencePruner(judge, self.prune_tau)
        return StepSearch(ctx, delimiter=self.delimiter, max_steps=self.max_steps,
                          tokens_per_step=self.tokens_per_step, pruner=pruner, logprobs=logprobs, scored=scored,
                          last_step=self.last_step)

    def config(self) -> dict:
        """The configuration, keyed as before for what did not change: the pruning parameters
        appear only when set, and for the searches keyed before, an unset `tokens_per_step`
        (steps cut at the delimiter only, as before) as the former unset `step_tokens`; a set
        one is keyed by its own name, its meaning being new (a step cut there no longer ends
        its path)."""
        c = super().config()
        for k in ("prune_equivalent", "prune_tau"):
            if c.get(k) is None:
                c.pop(k, None)
        if self.keyed_with_step_tokens and c.get("tokens_per_step", 0) is None:
            c = {("step_tokens" if k == "tokens_per_step" else k): v for k, v in c.items()}
        return c

    def check(self) -> None:
        """The step space and the judge's name, checked when the strategy is built (an unknown
        judge lists the valid ones)."""
        validate_steps(self.max_steps, self.delimiter, self.tokens_per_step)
        if self.prune_equivalent is not None:
            lookup("judge", self.prune_equivalent)
        if self.prune_tau is not None and self.prune_equivalent is None:
            raise ValueError("prune_tau is the threshold of prune_equivalent's judge: give a judge")

    async def close(self) -> None:
        judge = getattr(self, "_judge", None)
        if judge is not None:
            await judge.close()


class BeamStrategy(StepStrategy):
    """The parameters beam search and DVTS share (n paths, beam_width samples per expansion,
    greedy look-ahead, final selection, the step-reward aggregate `agg` both rank and select
    by, `pipeline`: score each expansion as soon as it returns), checked when the strategy is
    built."""

    keyed_with_step_tokens = True

    def __init__(
        self,
        n: Count = 8,
        beam_width: Count = 4,
        max_steps: Count = 40,
        lookahead: NonNegative = 0,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        select: Select = "max",
        tokens_per_step: Count | None = None,
        agg: Aggregate = "last",
        pipeline: bool = True,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        if n % beam_width:
            raise ValueError(f"beam_width ({beam_width}) must divide n ({n})")
        self.n = n
        self.beam_width = beam_width
        self.lookahead = lookahead
        self.select = select
        self.agg = agg
        self.pipeline = pipeline
        self.set_steps(max_steps, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    def value(self, c: Node) -> float:
        """A path's rank: its step rewards aggregated by `agg`."""
        return aggregate(c, self.agg)


class StepSearch:
    """The search state of one problem: the tree, the calls that grow and score it, counters."""

    def __init__(
        self,
        ctx: Context,
        *,
        delimiter: str | None = DEFAULT_DELIMITER,
        max_steps: int = 40,
        tokens_per_step: int | None = None,
        pruner: EquivalencePruner | None = None,
        logprobs: int | None = None,
        scored: bool = True,
        last_step: LastStep = "to_end",
    ):
        validate_steps(max_steps, delimiter, tokens_per_step)
        if scored and ctx.verifier is None:
            raise TTSError(
                "step-level search needs a verifier to score steps; pass verifier=... (a process reward model)"
            )
        self.ctx = ctx
        self.delimiter = delimiter
        self.max_steps = max_steps
        self.tokens_per_step = tokens_per_step
        self.last_step = last_step
        self.pruner = pruner
        self.logprobs = logprobs
        self.nodes: list[Node] = []
        self.stopped: StoppedBy = "done"
        self.expansions = 0  # generator requests
        self.samples = 0  # steps sampled (look-ahead rollouts included)
        self.lookahead_samples = 0
        self.rollout_samples = 0  # continuations to the end of sequence (not in the tree)
        self.prm_calls = 0  # verifier requests
        self.prm_passes = 0  # sequences scored
        self.root = self._add(None, "", 0, "")

    # -- the tree ------------------------------------------------------------------------
    def _add(self, parent: Node | None, text: str, tokens: int, joint: str, trace: Trace | None = None) -> Node:
        if parent is None:
            solution, depth, path_tokens = "", 0, 0
        else:
            # An empty step (the model stopped at once) adds nothing, not even a delimiter.
            solution = parent.prefix + text if text else parent.solution
            depth, path_tokens = parent.depth + 1, parent.path_tokens + tokens
        node = Node(
            id=len(self.nodes),
            parent=parent,
            text=text,
            solution=solution,
            prefix=solution + joint,
            depth=depth,
            tokens=tokens,
            path_tokens=path_tokens,
            trace=trace,
        )
        self.nodes.append(node)
        return node

    def joint(self, trace: Trace) -> str:
        """What goes between a sampled step and the next: the delimiter it stopped at (dropped by
        the engine), nothing after a step cut at `tokens_per_step`."""
        return "" if self.delimiter is None or trace.finish_reason == "length" else self.delimiter

    def _child(self, parent: Node, trace: Trace, final: bool) -> Node:
        cut = not final and self.tokens_per_step is not None
        after_cut = parent.parent is not None and parent.prefix == parent.solution
        finish = step_finish(trace, self.ctx.extract, cut=cut, delimited=not final and self.delimiter is not None,
                             after_cut=after_cut)
        if finish is None and final:
            finish = "stop"  # generated to the end of sequence (see `final`)
        elif finish is None and parent.depth + 1 >= self.max_steps:
            finish = "max_steps"  # last_step "delimited": no step left for this path
        child = self._add(parent, trace.text, trace.num_tokens, "" if finish else self.joint(trace), trace)
        child.finish_reason = finish
        return child

    def final(self, node: Node) -> bool:
        """Whether `node`'s next step is its path's last, generated to the end of sequence."""
        return self.last_step == "to_end" and node.depth + 1 >= self.max_steps

    def answer(self, node: Node) -> str | None:
        return self.ctx.extract(node.solution) if node.solution else None

    def graph(self, **node_data: dict[int, object]) -> nx.DiGraph:
        """The search tree: nodes are partial solutions, edges expansions (parent -> child). A
        sibling merged into an equivalent one has `equivalent_to` (that one's id); `node_data`
        adds a search's own per-node values (name -> {node id: value}, e.g. MCTS visits)."""
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(
                n.id,
                text=n.text,
                score=n.reward,
                value=n.value,
                tokens=n.tokens,
                depth=n.depth,
                finish_reason=n.finish_reason,
                equivalent_to=n.equivalent_to.id if n.equivalent_to is not None else None,
            )
            if n.parent is not None:
                g.add_edge(n.parent.id, n.id)
        for name, values in node_data.items():
            nx.set_node_attributes(g, values, name)
        return g

    # -- generation ----------------------------------------------------------------------
    async def _sample(self, prefix: str, k: int, temperature: float | None, final: bool = False) -> list[Trace]:
        """Up to k continuations of `prefix` to the end of the step (to the end of sequence when
        `final`); fewer (or none) when the budget cannot cover k, which stops the search."""
        if k <= 0:
            return []
        over: dict = {} if temperature is None else {"temperature": temperature}
        verifier_asks = self.ctx.verifier is not None and self.ctx.verifier.logprobs is not None
        if self.logprobs is not None and not verifier_asks:  # a verifier's own ask wins
            over["logprobs"] = self.logprobs
        if final:
            over.update(stop=(), max_tokens=self.ctx.sampling.max_tokens)
        else:
            over.update(stop=(self.delimiter,) if self.delimiter is not None else (),
                        max_tokens=self.tokens_per_step or self.ctx.sampling.max_tokens)
        try:
            traces, why = await self.ctx.sample(k, prefix=prefix, **over)
        except BudgetExceeded:
            traces, why = [], "budget"
        if why == "budget":
            self.stopped = "budget"
        if not traces:
            return []
        self.expansions += 1
        self.samples += len(traces)
        return traces

    async def expand(self, jobs: Sequence[tuple[Node, int]], temperature: float | None = None,
                     to_end: bool = False) -> list[list[Node]]:
        """Expand each `(node, k)` with k sampled steps, all requests issued together; the new
        children per job (fewer than k where the budget ran out; with a pruner, one child per
        group of equivalent open siblings: the others are merged into it). `to_end`: each
        child is the rest of the solution, generated to the end of sequence (as a last step)."""
        for node, _ in jobs:
            if node.complete:
                raise ValueError(f"node {node.id} is complete and cannot be expanded")
        last = [to_end or self.final(node) for node, _ in jobs]
        results = await asyncio.gather(*(self._sample(node.prefix, k, temperature, f) for (node, k), f in zip(jobs, last)))
        groups = [[self._child(node, t, f) for t in traces] for (node, _), traces, f in zip(jobs, results, last)]
        if self.pruner is None:
            return groups
        merged = await asyncio.gather(*(self.pruner.merge(self.ctx, g) for g in groups))
        if any(refused for _, refused in merged):
            self.stopped = "budget"
        return [kept for kept, _ in merged]

    async def grow(self, jobs: Sequence[tuple[Node, int]], lookahead: int = 0, pipeline: bool = True) -> list[list[Node]]:
        """`expand` the jobs and score the new children (an open child by its greedy rollout of
        `lookahead` steps); the scored children per job. With `pipeline`, each expansion is
        scored as soon as its own samples arrive (one verifier call per expansion), so no
        expansion waits for the slowest; without, one verifier call after all of them. The
        children, and so every ranking, are the same either way."""
        if not pipeline:
            groups = await self.expand(jobs)
            children = [c for g in groups for c in g]
            await self.score(children, await self.lookahead(children, lookahead))
            return groups

        async def one(job: tuple[Node, int]) -> list[Node]:
            group = (await self.expand([job]))[0]
            await self.score(group, await self.lookahead(group, lookahead))
            return group

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    async def lookahead(self, nodes: Sequence[Node], steps: int) -> dict[int, list[Trace]]:
        """Greedy (temperature 0) rollouts of up to `steps` more steps from each open node, all
        nodes' rollouts advanced together; node id -> the rollout's steps. Rollouts are scored,
        not kept in the tree."""
        rollouts: dict[int, list[Trace]] = {n.id: [] for n in nodes if not n.complete}
        live = [n for n in nodes if not n.complete]
        for _ in range(steps):
            if not live or self.stopped == "budget":
                break
            prefixes = [n.prefix + "".join(t.text + self.joint(t) for t in rollouts[n.id]) for n in live]
            results = await asyncio.gather(*(self._sample(p, 1, 0.0) for p in prefixes))
            still = []
            for n, traces in zip(live, results):
                if not traces:
                    continue
                rollouts[n.id].append(traces[0])
                self.lookahead_samples += 1
                ended = step_finish(traces[0], self.ctx.extract, cut=self.tokens_per_step is not None,
                                    delimited=self.delimiter is not None) is not None
                if not ended and n.depth + len(rollouts[n.id]) < self.max_steps:
                    still.append(n)
            live = still
        return rollouts

    async def rollout(self, nodes: Sequence[Node], temperature: float | None = None) -> dict[int, Trace]:
        """One continuation of each open node to the end of sequence (`Sampling.max_tokens`), all
        issued together; node id -> its trace (none for a node the budget refused). Rollouts are
        charged as any generation and not kept in the tree (φ-Decoding's foresight)."""
        live = [n for n in nodes if not n.complete]
        results = await asyncio.gather(*(self._sample(n.prefix, 1, temperature, final=True) for n in live))
        out = {n.id: traces[0] for n, traces in zip(live, results) if traces}
        self.rollout_samples += len(out)
        return out

    # -- scoring -------------------------------------------------------------------------
    def _scored_trace(self, node: Node, rollout: Sequence[Trace] = ()) -> Trace:
        base = node.trace or Trace(node.text, node.tokens)
        text, joint = node.text, node.prefix[len(node.solution):]
        for t in rollout:
            text, joint = text + joint + t.text, self.joint(t)
        logprobs = list(base.logprobs) + [lp for t in rollout for lp in t.logprobs]
        top = list(base.top_logprobs) + [row for t in rollout for row in t.top_logprobs]
        return Trace(
            text=text,
            num_tokens=node.tokens + sum(t.num_tokens for t in rollout),
            finish_reason=(rollout[-1].finish_reason if rollout else base.finish_reason),
            logprobs=logprobs,
            top_logprobs=top,
            prefix=node.parent.prefix if node.parent is not None else "",
        )

    def _whole_trace(self, node: Node) -> Trace:
        """The whole partial solution as one step, newline runs collapsed to one "\\n" (the
        particle-filtering reference's `outputs_is_single_step`)."""
        path = node.path()
        return Trace(
            text=re.sub(r"\n+", "\n", node.solution),
            num_tokens=node.path_tokens,
            finish_reason=node.trace.finish_reason if node.trace is not None else None,
            logprobs=[lp for n in path if n.trace is not None for lp in n.trace.logprobs],
            top_logprobs=[row for n in path if n.trace is not None for row in n.trace.top_logprobs],
        )

    async def score(
        self, nodes: Sequence[Node], rollouts: dict[int, list[Trace]] | None = None, *, single_step: bool = False
    ) -> bool:
        """Score `nodes` in one verifier call (a node with a rollout is scored by its rollout;
        with `single_step`, each whole solution as one step); False when the budget refused the
        call (the nodes stay unscored)."""
        nodes = [n for n in nodes if n.parent is not None]
        if not nodes:
            return True
        rollouts = rollouts or {}
        if single_step:
            traces = [self._whole_trace(n) for n in nodes]
        else:
            traces = [self._scored_trace(n, rollouts.get(n.id, ())) for n in nodes]
        try:
            scores = await self.ctx.score(traces)
        except BudgetExceeded:
            self.stopped = "budget"
            return False
        self.prm_calls += 1
        self.prm_passes += len(nodes)
        for n, s in zip(nodes, scores):
            n.rewards = tuple(s.steps)
            n.reward = s.steps[-1] if s.steps else s.value
            n.value = s.value
        return True

    # -- selection and the result --------------------------------------------------------
    async def choose(
        self, candidates: Sequence[Node], select: str, key: Callable[[Node], float] | None = None
    ) -> tuple[str | None, dict]:
        """The final answer: the candidate with an answer and the highest score ("max"; the
        first of equals; a candidate without an answer only when none has one), or weighted
        majority voting over the candidates' answers ("weighted"; those without an answer never
        vote). The score is `key(node)`, by default the verifier's aggregate `Node.value`."""
        if not candidates:
            return None, {}
        key = key or (lambda n: rank_key(n.value))
        if select == "max":
            best = max(candidates, key=lambda n: (self.answer(n) is not None, key(n)))
            return self.answer(best), {}
        weights = [max(key(n), 0.0) for n in candidates]
        answer, tally = await vote([self.answer(n) for n in candidates], weights)
        return answer, {"votes": tally}

    def trace_of(self, node: Node) -> Trace:
        """A finished record of one path (the whole solution, its steps and scores)."""
        finish = node.finish_reason or ("budget" if self.stopped == "budget" else None)
        return Trace(
            text=node.solution,
            num_tokens=node.path_tokens,
            finish_reason=finish,
            steps=[Step(n.text, n.tokens, n.reward) for n in node.path()],
            answer=self.answer(node),
            score=node.value,
        )

    def result(self, problem: Problem, answer: str | None, paths: Sequence[Node],
               node_data: dict[str, dict[int, object]] | None = None, **telemetry) -> Result:
        """The result: `paths` become its traces; the tree (with `node_data`, see `graph`),
        the counters and the pruner's, and the strategy's own `telemetry`."""
        if self.pruner is not None:
            telemetry["equivalent"] = self.pruner.telemetry()
        tel = {
            "tree": self.graph(**(node_data or {})),
            "paths": [n.id for n in paths],  # the tree node each returned trace ends at
            "nodes": len(self.nodes),
            "steps": max(n.depth for n in self.nodes),
            "expansions": self.expansions,
            "samples": self.samples,
            "lookahead_samples": self.lookahead_samples,
            "rollout_samples": self.rollout_samples,
            "prm_calls": self.prm_calls,
            "prm_passes": self.prm_passes,
            **telemetry,
        }
        return Result(problem.id, answer, [self.trace_of(n) for n in paths], stopped_by=self.stopped, telemetry=tel)

    def best_partial(self, nodes: Sequence[Node]) -> list[Node]:
        """The best-scored of `nodes` (for a budget stop with nothing complete), as a list."""
        nodes = [n for n in nodes if n.parent is not None]
        return [max(nodes, key=lambda n: rank_key(n.reward))] if nodes else []
