"""Build tiny random-weight models offline (seconds), for tests and benchmarks.

The tokenizer is byte-level BPE trained on a few kilobytes of math text, so any string
round-trips; the model is a 2-layer Llama. Its outputs are gibberish, which is all the tests
need: real engine behaviour (batching, streaming, abort, prefix caching, token counts).
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if not (loop.last and continue_final_message is defined and continue_final_message) %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3's: the thinking switch `enable_thinking` (off: an empty thinking block in the prompt).
QWEN3_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if not (loop.last and continue_final_message is defined and continue_final_message) %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

THINK_TOKENS = ("<think>", "</think>")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "The answer is \\boxed{72}. Step 1: compute 48 / 2 = 24. Step 2: add 48 + 24 = 72.",
    "Let x be the number. Then 2x + 3 = 11, so x = 4. Therefore the final answer is 4.",
    "0123456789 + - * / = ( ) { } [ ] \\frac{1}{2} \\sqrt{3} \\pi #### ",
]


def build_tokenizer(path: Path, extra_special: tuple[str, ...] = (), thinking: bool = False) -> None:
    """Train the tiny byte-level BPE tokenizer into `path`; `extra_special` adds special tokens
    (single ids, never split), e.g. a PRM's step token. `thinking`: a reasoning model's, as
    Qwen3's: `<think>`/`</think>` single tokens that stay in the decoded text (added, not
    special, so vLLM's reasoning parsers find them and stop strings match them) and the
    Qwen3-style template with its `enable_thinking` switch."""
    from tokenizers import AddedToken

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL + list(extra_special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(extra_special) or None,
    )
    if thinking:
        fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast.chat_template = QWEN3_CHAT_TEMPLATE if thinking else CHAT_TEMPLATE
    fast.save_pretrained(path)


def build_llama(path: str | Path, hidden: int = 128, layers: int = 2, seed: int = 0, thinking: bool = False) -> Path:
    """A tiny random Llama with its tokenizer in `path`; returns the path. Idempotent.
    `thinking`: a reasoning model's tokenizer and template (see `build_tokenizer`)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer(path, thinking=thinking)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        # vLLM's CPU attention kernels support head sizes of 32 and up, not less.
        num_attention_heads=hidden // 32,
        num_key_value_heads=max(1, hidden // 64),
        head_dim=32,
        max_position_embeddings=4096,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    # Random weights at init scale give a near-uniform next-token distribution, so samples run
    # to max_tokens; scale up the output layer so the model has preferences and sometimes stops.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(2.0)
    model.save_pretrained(path, safe_serialization=True)
    gen = {"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    (path / "generation_config.json").write_text(json.dumps(gen))
    return path


def build_qwen2_prm(
    path: str | Path, hidden: int = 128, layers: int = 2, seed: int = 0, step_token: str | None = "<extra_0>",
    tokenizer_from: str | Path | None = None,
) -> Path:
    """A tiny random Qwen2.5-Math-PRM lookalike in `path` (returns the path; idempotent).

    transformers has no class for vLLM's `Qwen2ForProcessRewardModel`, so the folder is written
    by hand: a Qwen2 config with that architecture and 2 labels, and one safetensors file holding
    the Qwen2 body (`model.*`) and the score head vLLM's qwen2_rm.py loads (`score.0` Linear
    hidden->hidden, ReLU, `score.2` Linear hidden->2, both with bias). The tokenizer has
    `step_token` as one special token (None: a tokenizer without it, to test the error).
    `tokenizer_from`: a model folder whose tokenizer (plus `step_token`) is used instead, as a
    real Qwen2.5-Math-PRM shares its generator's Qwen tokenizer (benchmarks compare token counts).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer_from is not None:
        src = AutoTokenizer.from_pretrained(tokenizer_from)
        if step_token and step_token not in src.get_vocab():
            src.add_special_tokens({"additional_special_tokens": [step_token]})
        src.save_pretrained(path)
    else:
        build_tokenizer(path, extra_special=(step_token,) if step_token else ())
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        # head dim = hidden / heads = 32: vLLM's CPU attention kernels reject less.
        num_attention_heads=hidden // 32,
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=4096,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
        num_labels=2,
    )
    body = Qwen2Model(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items() if "rotary_emb" not in k}
    for i, (n_in, n_out) in ((0, (hidden, hidden)), (2, (hidden, 2))):
        lin = torch.nn.Linear(n_in, n_out)
        # A wider head than init scale, so the two labels' probabilities spread out.
        tensors[f"score.{i}.weight"] = (lin.weight.detach() * 4.0).contiguous()
        tensors[f"score.{i}.bias"] = lin.bias.detach().contiguous()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["architectures"] = ["Qwen2ForProcessRewardModel"]
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    return path
