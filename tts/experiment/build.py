"""The options of one run (`BenchConfig`: what `tts bench` takes and each sweep run is) and
building the run's parts from them: strategy (validated by its parameter model), verifier,
generator, budget, sampling. Everything here is cheap except `build_generator`."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tts.context import Sampling
from tts.errors import TTSError
from tts.experiment.inputs import BudgetCaps, DataFile, OutPath, Retries, Timeout, one_line, option_name
from tts.registry import lookup
from tts.types import Budget

BACKENDS = ("openai", "replay", "vllm")


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; valid: {', '.join(BACKENDS)}")
    return name


class BenchConfig(BaseModel):
    """The options of one `tts bench` run (the CLI's, or one run of a sweep), validated when
    built: a bad value is a ValidationError naming the option, before anything starts."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str
    strategy: str
    n: int = Field(8, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    verifier_model: str | None = None  # the reward model a PRM verifier loads
    model: str | None = None  # None: the embedded default model
    name: str | None = None  # the model name results are recorded under (default: see model_name)
    backend: Annotated[str, AfterValidator(_check_backend)] = "vllm"  # replay: of the trace bank `bank`
    base_urls: list[str] = Field(default_factory=list)
    bank: str | None = None  # --backend replay: the bank folder
    data: DataFile = None
    limit: int | None = Field(None, ge=1)
    out: OutPath = None
    seed: int = Field(0, ge=0)
    # None: the bank's value under --backend replay, else tts.Sampling's default (0.7, 1.0, 1024)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    # reasoning models: the template's thinking switch, a cap on each sample's thinking tokens,
    # and the thinking markers of a model of no known family (tts.thinking)
    enable_thinking: bool | None = None
    thinking_budget: int | None = Field(None, ge=1)
    think_open: str | None = None
    think_close: str | None = None
    budget: BudgetCaps = Field(default_factory=dict)
    concurrency: int = Field(64, ge=1)
    max_model_len: int = Field(4096, ge=1)
    enforce_eager: bool | None = None  # None: eager on the CPU, compiled graphs on a GPU
    timeout: Timeout = None
    retries: Retries = None

    @classmethod
    def from_options(cls, **options: Any) -> "BenchConfig":
        """Validate CLI options: a bad one is one TTSError line naming the option."""
        try:
            return cls(**options)
        except ValidationError as e:
            raise TTSError(one_line(e, option_name)) from None


def build_strategy(name: str, n: int | None, params: dict[str, Any]) -> Any:
    """The named strategy with `n` as its size and `params` validated by its parameter model."""
    factory = lookup("strategy", name)
    model = factory.params_model()
    size = factory.size_param()
    kwargs = dict(params)
    if n is not None and size is not None and not any(k in kwargs for k in (size, *factory.aliases)):
        kwargs[size] = n
    accepted = [*model.model_fields, *factory.aliases]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TTSError(f"strategy '{name}' takes no parameter {', '.join(unknown)}{hint}; "
                       f"it takes: {', '.join(accepted)}")
    try:
        checked = model.model_validate(kwargs)
        return factory(**{k: getattr(checked, k) for k in model.model_fields})
    except ValidationError as e:
        raise TTSError(f"strategy '{name}': {one_line(e)}") from None
    except (TypeError, ValueError) as e:
        raise TTSError(f"strategy '{name}': {e}") from None


def build_verifier(name: str | None, cfg: BenchConfig, generator: Any) -> Any:
    """The named verifier; a reward model gets `cfg.verifier_model`, a judge the generator."""
    if name is None:
        return None
    factory = lookup("verifier", name)
    accepted = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("model", cfg.verifier_model), ("generator", generator)) if k in accepted}
    return factory(**kwargs)


def build_budget(caps: dict[str, float]) -> Budget | None:
    if not caps:
        return None
    valid = set(Budget.__dataclass_fields__)
    bad = sorted(set(caps) - valid)
    if bad:
        raise TTSError(f"unknown budget cap {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
    return Budget(**caps)  # type: ignore[arg-type]



def open_bank(cfg: BenchConfig) -> Any:
    """The trace bank `--backend replay` serves from (TTSError when missing or unreadable)."""
    from tts.bank import Bank

    if not cfg.bank:
        raise TTSError("--backend replay needs --bank DIR (a bank from `tts record`)")
    return Bank(cfg.bank)


def model_name(cfg: BenchConfig, bank: Any = None) -> str:
    """The model results are recorded under. Replayed results get `replay:<model>@<bank folder>`
    so their config hash never equals a live run's: replay serves a fixed pool of recorded
    samples, which is not the same experiment as sampling the model afresh."""
    if cfg.name:
        return cfg.name
    if cfg.backend == "replay":
        bank = bank or open_bank(cfg)
        return f"replay:{bank.model}@{bank.path.name}"
    return cfg.model or _default_model_name()


def resolve_sampling(cfg: BenchConfig, bank: Any = None) -> Sampling:
    """The options given, else (replay) what the bank was recorded with, else the defaults."""
    recorded = (bank or open_bank(cfg)).sampling if cfg.backend == "replay" else {}
    d = Sampling()
    pick = lambda f: next(v for v in (getattr(cfg, f), recorded.get(f), getattr(d, f)) if v is not None)  # noqa: E731
    return Sampling(pick("temperature"), pick("top_p"), pick("max_tokens"),
                    enable_thinking=cfg.enable_thinking, thinking_budget=cfg.thinking_budget)


def build_generator(cfg: BenchConfig) -> Any:
    if cfg.backend == "vllm":
        from tts.models import resolve_model
        from tts.backends.vllm import VLLMGenerator

        path = resolve_model(cfg.model)
        return VLLMGenerator(
            path,
            name=cfg.model or _default_model_name(),
            seed=cfg.seed,
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
            think_open=cfg.think_open,
            think_close=cfg.think_close,
        )
    if cfg.backend == "openai":
        from tts.backends.openai import OpenAIGenerator

        if not cfg.model or not cfg.base_urls:
            raise TTSError("--backend openai needs --model NAME (as the server knows it) and --base-url URL")
        return OpenAIGenerator(cfg.model, cfg.base_urls, think_open=cfg.think_open, think_close=cfg.think_close,
                               **request_policy(OpenAIGenerator, cfg))
    if cfg.backend == "replay":
        from tts.backends.replay import ReplayGenerator

        bank = open_bank(cfg)
        # Checks the sampling against the bank's: a mismatch is a TTSError naming both values.
        return ReplayGenerator(bank, seed=cfg.seed, sampling=resolve_sampling(cfg, bank),
                               name=model_name(cfg, bank))
    raise TTSError(f"unknown backend '{cfg.backend}'; valid: {', '.join(BACKENDS)}")


def request_policy(cls: Any, cfg: BenchConfig) -> dict[str, Any]:
    """--timeout / --retries as the OpenAI generator's constructor takes them (given ones only)."""
    accepted = inspect.signature(cls).parameters
    out: dict[str, Any] = {}
    if cfg.timeout is not None:
        out["timeout"] = cfg.timeout
    if cfg.retries is not None:
        out["retries" if "retries" in accepted else "max_retries"] = cfg.retries
    return out


def _default_model_name() -> str:
    from tts.models import DEFAULT_MODEL

    return DEFAULT_MODEL
