"""Session fixtures: a tiny random-weight model built offline and ONE vLLM CPU engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))  # tiny_models, scripted

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "gsm8k_test.jsonl").exists():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny_models import build_llama

    return build_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
async def vllm_generator(tiny_model_dir):
    from tts.backends.vllm import VLLMGenerator

    gen = VLLMGenerator(
        str(tiny_model_dir), seed=0, enforce_eager=True, max_model_len=2048, log_stats=True
    )
    yield gen
    await gen.close()


@pytest.fixture(scope="session")
def tiny_thinking_dir(tmp_path_factory) -> Path:
    """A tiny random reasoning model: `<think>`/`</think>` single tokens and a Qwen3-style chat
    template with `enable_thinking` (its folder name makes it a Qwen3-family model)."""
    from tiny_models import build_llama

    return build_llama(tmp_path_factory.mktemp("models") / "tiny-qwen3-think", thinking=True)


@pytest.fixture(scope="session")
async def thinking_generator(tiny_thinking_dir):
    """A second session engine, on the tiny reasoning model."""
    from tts.backends.vllm import VLLMGenerator

    gen = VLLMGenerator(
        str(tiny_thinking_dir), seed=0, enforce_eager=True, max_model_len=2048, log_stats=True
    )
    yield gen
    await gen.close()


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-Math-PRM lookalike (vLLM's Qwen2ForProcessRewardModel)."""
    from tiny_models import build_qwen2_prm

    return build_qwen2_prm(tmp_path_factory.mktemp("models") / "tiny-qwen2-prm")


@pytest.fixture(scope="session")
def math100_bank(tmp_path_factory):
    """The first 12 recorded math100 problems imported into a bank (read-only in tests)."""
    from tts.bank import import_math100

    src = SHARED_DATA / "math100_qwen25math_8samples_rm.jsonl"
    if not src.exists():
        pytest.skip(f"{src} not found")
    return import_math100(src, tmp_path_factory.mktemp("banks") / "m100", tokenizer=None, limit=12)
