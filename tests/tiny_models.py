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

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "The answer is \\boxed{72}. Step 1: compute 48 / 2 = 24. Step 2: add 48 + 24 = 72.",
    "Let x be the number. Then 2x + 3 = 11, so x = 4. Therefore the final answer is 4.",
    "0123456789 + - * / = ( ) { } [ ] \\frac{1}{2} \\sqrt{3} \\pi #### ",
]


def build_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)


def build_llama(path: str | Path, hidden: int = 128, layers: int = 2, seed: int = 0) -> Path:
    """A tiny random Llama with its tokenizer in `path`; returns the path. Idempotent."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer(path)
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
