"""Sakana AI's AB-MCTS (Inoue et al., 2025, "Wider or Deeper? Scaling LLM Inference-Time Compute
with Adaptive Branching Tree Search", arXiv 2503.04412), run through its reference library
(`treequest`, PyPI treequest==0.3.3, `pip install 'ttscale[treequest]'`) on this project's step
space: an adapter, so the same generator and PRM drive it as drive `mcts`, and the answers of the
two can be compared on the same trees (tests/test_search.py).

treequest asks which node to grow (AB-MCTS-A: Thompson sampling decides, at each node, between
a new child, "wider", and descending into an existing one, "deeper"); growing a node here
samples one next step of its partial solution and scores it with the PRM (the reward of the
latest step, in [0, 1], is the node's score); treequest is told the result. A finished path
cannot grow: asked to, it is told itself again, at no cost (treequest's nodes are answers that
can always be refined; ours end). `n` nodes are grown. Answer: the finished path with an answer
and the highest score (treequest's `top_k` ranks by score). treequest draws from NumPy's global
generator; the adapter gives it one seeded from the run's seed and restores the global one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from tts.context import Context
from tts.errors import TTSError
from tts.options import Count, Delimiter
from tts.search.tree import DEFAULT_DELIMITER, Node, StepStrategy
from tts.types import Problem, Result


@contextlib.contextmanager
def numpy_random(state: dict) -> Iterator[None]:
    """NumPy's global generator set to `state["rng"]` inside the block (saved back after it),
    the caller's global state restored."""
    outer = np.random.get_state()
    np.random.set_state(state["rng"])
    try:
        yield
    finally:
        state["rng"] = np.random.get_state()
        np.random.set_state(outer)


class ABMCTS(StepStrategy):
    name = "ab_mcts"

    def __init__(
        self,
        n: Count = 16,
        max_steps: Count = 40,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        tokens_per_step: Count | None = None,
    ):
        self.n = n
        self.max_steps = max_steps
        self.delimiter = delimiter
        self.tokens_per_step = tokens_per_step
        self.check()

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        try:
            import treequest
        except ImportError:
            raise TTSError("ab_mcts runs Sakana AI's treequest: pip install 'ttscale[treequest]'") from None
        s = self.search(ctx)
        algo = treequest.ABMCTSA()
        state = algo.init_tree()
        seeded = {"rng": np.random.RandomState(ctx.seed).get_state()}
        grown: list[int] = []
        for _ in range(self.n):
            with numpy_random(seeded):
                state, trial = algo.ask(state, ["step"])
            parent: Node = trial.parent_state or s.root
            if parent.complete:
                child = parent  # a finished path cannot grow: it is its own refinement
            else:
                kids = (await s.grow([(parent, 1)]))[0]
                if not kids:
                    break  # the budget refused the step
                child = kids[0]
            grown.append(child.id)
            algo.tell(state, trial.trial_id, (child, min(1.0, max(0.0, child.reward or 0.0))))
            if s.stopped == "budget":
                break
        done = [c for c in s.nodes if c.complete and c.parent is not None]
        paths = done or s.best_partial(s.nodes)
        answer, extra = await s.choose(paths, "max", lambda c: c.reward or 0.0)
        return s.result(problem, answer, paths, grown=grown, **extra)
