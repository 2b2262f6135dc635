"""Every option a user gives, declared once: the pydantic blocks below are the source of the
`tts bench` and `tts serve` flags (`add_flags` / `given`: names, types, defaults and help), the
sweep file's blocks and JSON schema (`tts.experiment.schema`), `tts serve`'s settings and the
Python API's keyword arguments (`BenchConfig(**options)`, `tts.experiment.evaluate.bench`).

- `ModelOptions`: which model, on which backend (a registered plugin), and how to reach it.
- `SamplingOptions`: temperature, top-p, max tokens and a reasoning model's thinking switches;
  None means "the default" (`tts.Sampling`'s, or under replay what the bank was recorded with).
- `StrategyOptions`: the strategy, its size `n`, its parameters, its verifier.
- `TaskOptions`, `RunOptions`: the benchmark, and the run's seed.
- `BenchConfig`: all of them, flat: one `tts bench` run (and one run of a sweep).

Values are checked here, once, for every surface: ranges, finite numbers (NaN and infinity are
refused everywhere), budget caps by name, data files readable, outputs writable. A bad value is
a ValidationError naming the field, which each surface turns into its one-line error.
"""

from __future__ import annotations

import argparse
import os
import typing
from pathlib import Path
from types import UnionType
from urllib.parse import urlsplit
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tts.errors import TTSError
from tts.secrets import redact
from tts.types import Budget, Sampling


# -- shared value types ---------------------------------------------------------------------------
def check_budget(caps: dict[str, float]) -> dict[str, float]:
    valid = sorted(Budget.__dataclass_fields__)
    bad = sorted(set(caps) - set(valid))
    if bad:
        raise ValueError(f"unknown budget cap {', '.join(bad)}; valid: {', '.join(valid)}")
    return caps


def check_data_file(path: str | None) -> str | None:
    """A data file must exist, be readable and be UTF-8 text (checked now, not mid-run)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data file {path} not found; pass an existing JSONL file or leave it out")
    try:
        p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ValueError(f"cannot read data file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"data file {path} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    return path


def check_writable(path: str | None) -> str | None:
    """An output path whose folder exists and is writable, or can be created."""
    if path is None:
        return None
    p = Path(path).absolute()
    if p.exists() and p.is_dir() and not os.access(p, os.W_OK):
        raise ValueError(f"output {path} is not writable")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output {path} cannot be written ({parent} is not a writable folder)")
    if p.exists() and p.is_file() and not os.access(p, os.W_OK):
        raise ValueError(f"output {path} is not writable")
    return path


class Flag:
    """How a field appears on the command line, where its name alone does not say it:
    `name` (e.g. "--base-url" for `base_urls`), `metavar`, or `hidden` (no flag)."""

    def __init__(self, name: str | None = None, metavar: str | None = None, hidden: bool = False):
        self.name, self.metavar, self.hidden = name, metavar, hidden


def check_url(url: str) -> str:
    """A server's base URL: http(s)://host[:port][/path] (a typo fails now, not after retries)."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(f"{redact(url)!r} is not a server URL; give one like http://127.0.0.1:8000/v1")
    return url


Count = Annotated[int, Field(ge=1)]  # a size, a number of problems or samples: at least one
NonNegative = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[float, Field(gt=0, le=1)]  # a fraction kept or a threshold: (0, 1]
Delimiter = Annotated[str, Field(min_length=1)]  # a step delimiter
Finite = Annotated[float, Field(allow_inf_nan=False)]
Cap = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a budget cap: finite, > 0 (NaN refused)
BudgetCaps = Annotated[dict[str, Cap], AfterValidator(check_budget), Flag("--budget", "CAP=V")]
DataFile = Annotated[str | None, AfterValidator(check_data_file)]
OutPath = Annotated[str | None, AfterValidator(check_writable)]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- the blocks -----------------------------------------------------------------------------------
class ModelOptions(Options):
    model: str | None = Field(None, description="local model folder, hub id, or embedded name "
                              "(default: the embedded model)")
    backend: str = Field("vllm", description="a registered backend: vllm (in process), openai (a server), "
                         "replay (a trace bank)")
    base_urls: Annotated[list[Annotated[str, AfterValidator(check_url)]], Flag("--base-url", "URL")] = Field(
        default_factory=list, description="--backend openai: server URL (repeat for replicas)")
    bank: str | None = Field(None, description="--backend replay: the trace bank folder (from `tts record`)")
    max_model_len: Count = Field(4096, description="longest prompt + completion (vllm backend)")
    enforce_eager: bool | None = Field(None, description="skip graph capture (default: on for the CPU, off on a GPU)")
    timeout: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = Field(
        None, description="--backend openai: seconds to wait for a response")
    retries: Annotated[int | None, Field(ge=0)] = Field(None, description="--backend openai: retries of a failed request")
    think_open: str | None = Field(None, description="thinking open marker of a reasoning model of no known family "
                                   "(e.g. '<think>')")
    think_close: str | None = Field(None, description="thinking close marker (e.g. '</think>')")


class SamplingOptions(Options):
    temperature: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = Field(
        None, description="default 0.7 (replay: the bank's)")
    top_p: Annotated[float | None, Field(gt=0, le=1)] = Field(None, description="default 1.0 (replay: the bank's)")
    max_tokens: Count | None = Field(None, description="per sample; default 1024 (replay: the bank's)")
    enable_thinking: bool | None = Field(None, description="a reasoning model's thinking switch in its chat "
                                         "template (Qwen3's enable_thinking)")
    thinking_budget: Annotated[Count | None, Flag(metavar="B")] = Field(
        None, description="cap each sample's thinking at B tokens, then close it and generate the answer")

    def resolve(self, recorded: dict[str, Any] | None = None) -> Sampling:
        """The sampling a run uses: these options, else `recorded` (a bank's), else the defaults."""
        recorded = recorded or {}
        d = Sampling()
        pick = lambda f: next(v for v in (getattr(self, f), recorded.get(f), getattr(d, f)) if v is not None)  # noqa: E731
        return Sampling(pick("temperature"), pick("top_p"), pick("max_tokens"),
                        enable_thinking=self.enable_thinking, thinking_budget=self.thinking_budget)


class StrategyOptions(Options):
    strategy: str = Field(description="a registered strategy (an unknown name lists them)")
    n: Annotated[Count, Flag("-n")] = Field(8, description="the strategy's size, its parameter `n`")
    params: Annotated[dict[str, Any], Flag("--param", "K=V")] = Field(
        default_factory=dict, description="another strategy parameter (repeat)")
    verifier: str | None = Field(None, description="a registered verifier (default: the one the strategy declares)")
    verifier_model: str | None = Field(None, description="the reward model folder or hub id a PRM verifier loads")


class BudgetOptions(Options):
    budget: BudgetCaps = Field(default_factory=dict, description="per-problem cap (repeat), e.g. total_tokens=20000 "
                               f"(caps: {', '.join(Budget.__dataclass_fields__)})")

    def caps(self) -> Budget | None:
        return Budget(**self.budget) if self.budget else None  # type: ignore[arg-type]


class TaskOptions(Options):
    task: str = Field(description="a registered task (an unknown name lists them)")
    data: DataFile = Field(None, description="local JSONL file instead of the dataset hub")
    limit: Count | None = Field(None, description="first N problems")


class RunOptions(Options):
    seed: Annotated[int, Field(ge=0)] = Field(0, description="engine seed and the run's seed")


class BenchConfig(RunOptions, BudgetOptions, SamplingOptions, ModelOptions, StrategyOptions, TaskOptions):
    """The options of one `tts bench` run (the CLI's, a sweep's run, or the Python API's keyword
    arguments), validated when built: a bad value is a ValidationError naming the option."""

    out: OutPath = Field(None, description="results JSONL (default results/<task>_<strategy>.jsonl)")
    concurrency: Count = Field(64, description="problems in flight")

    @classmethod
    def from_options(cls, **options: Any) -> "BenchConfig":
        """Validate options: a bad one is one TTSError line naming the flag."""
        try:
            return cls(**options)
        except ValidationError as e:
            raise TTSError(one_line(e, option_name)) from None


# -- command-line flags, derived from the blocks --------------------------------------------------
def _flag(name: str, info: Any) -> Flag:
    found = next((m for m in info.metadata if isinstance(m, Flag)), None)
    return Flag(found.name if found and found.name else "--" + name.replace("_", "-"),
                found.metavar if found else None, bool(found and found.hidden))


def _base(tp: Any) -> Any:
    """The type under Optional / Annotated."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, UnionType) and len(args) == 1:
        return _base(args[0])
    return tp


def add_flags(parser: argparse.ArgumentParser | Any, *blocks: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `blocks` (its name, type, help and default from the field). Every
    flag defaults to None ("not given"), so `given` passes on only what the user typed and the
    blocks' own defaults apply."""
    seen: set[str] = set()
    for block in blocks:
        for name, info in block.model_fields.items():
            if name in skip or name in seen:
                continue
            seen.add(name)
            flag = _flag(name, info)
            if flag.hidden:
                continue
            tp = _base(info.annotation)
            origin = typing.get_origin(tp) or tp
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            help_ = (info.description or "") + (f" (default {default})" if default not in (None, [], {}) else "")
            kw: dict[str, Any] = dict(dest=name, default=None, help=help_)
            if flag.metavar:
                kw["metavar"] = flag.metavar
            if tp is bool:
                kw["action"] = argparse.BooleanOptionalAction
            elif origin in (list, dict):
                kw["action"] = "append"
            elif tp in (int, float):
                kw["type"] = tp
            if info.is_required():
                kw["required"] = True
            parser.add_argument(flag.name, **kw)


def given(ns: argparse.Namespace, *blocks: type[BaseModel]) -> dict[str, Any]:
    """The fields of `blocks` the user gave on the command line (K=V lists parsed into dicts)."""
    out: dict[str, Any] = {}
    for block in blocks:
        for name, info in block.model_fields.items():
            v = getattr(ns, name, None)
            if v is None or name in out:
                continue
            if typing.get_origin(_base(info.annotation)) is dict:
                v = key_values(v, _flag(name, info).name)
            out[name] = v
    return out


def key_values(items: list[str], what: str) -> dict[str, Any]:
    """`K=V` items as a dict, each value read as an int, float, bool or None where it is one."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TTSError(f"{what} '{item}' must look like KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = _scalar(v.strip())
    return out


def _scalar(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def one_line(e: ValidationError, name: Any = None) -> str:
    """The first problem of a validation error, as `field: problem (got value)`; `name` maps a
    field location to what the user typed (an option name, a sweep path)."""
    errs = e.errors()
    err = errs[0]
    loc = [str(x) for x in err["loc"]]
    where = name(loc) if name else ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    got = f" (got {redact(repr(err['input'])):.60})" if "input" in err and not isinstance(err["input"], dict) else ""
    more = f" (and {len(errs) - 1} more problem{'s' * (len(errs) > 2)})" if len(errs) > 1 else ""
    return f"{where + ': ' if where else ''}{' '.join(msg.split())}{got}{more}"


def option_name(loc: list[str]) -> str:
    """The flag a field location is typed as (`base_urls` -> --base-url)."""
    if not loc:
        return ""
    info = BenchConfig.model_fields.get(loc[0])
    flag = _flag(loc[0], info).name if info is not None else "--" + loc[0].replace("_", "-")
    return " ".join([flag, *(x for x in loc[1:] if not x.isdigit())])  # a K=V option names its key
