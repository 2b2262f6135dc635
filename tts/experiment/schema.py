"""The sweep file: its pydantic models (the schema `tts sweep schema` prints), the bounded
reading of the YAML, and one-line errors `FILE: field.path: problem`.

Its blocks are `tts bench`'s option blocks (`tts.options`): the model, sampling, strategy and
task options are declared once, so the CLI and a sweep take the same options with the same
checks (a block's main option is written `name:` here, `--model` / `--strategy` / `--task` there).
Relative paths in a file (`data`, `bank`, `output`) are relative to the file's own folder.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts.errors import TTSError
from tts.registry import load_all
from tts.experiment.inputs import load_yaml
from tts.options import (BudgetCaps, Count, ModelOptions, OutPath, SamplingOptions, StrategyOptions,
                         TaskOptions)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Axes = dict[str, list[Any]]


def _named(field: str) -> ConfigDict:
    """A block whose main field is written `name:` in the file (`model: {name: ...}`), as the
    CLI writes it `--model` / `--strategy` / `--task`; both spellings are accepted."""
    return ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True,
                      alias_generator=lambda f: "name" if f == field else f)


class ModelSpec(ModelOptions):
    """The sweep's `model:` block: `tts bench`'s model options (`tts.options.ModelOptions`)."""

    model_config = _named("model")


class TaskSpec(TaskOptions):
    model_config = _named("task")
    slice: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] | None = Field(
        None, description="[start, stop): problems start..stop-1 (before limit)")


class StrategySpec(StrategyOptions):
    """A strategy block: `tts bench`'s strategy options, any of them left to a grid/zip axis."""

    model_config = _named("strategy")
    strategy: str | None = Field(None, description="registered strategy (or a grid/zip axis 'strategy')")
    n: Count | None = Field(None, description="the strategy's size (default 8)")
    grid: Axes | None = None
    zip_: Axes | None = Field(None, alias="zip")


class SweepFile(_Strict):
    """A sweep: tasks x strategy configurations x seeds, run with one model."""

    name: str | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    tasks: list[TaskSpec] = Field(min_length=1)
    strategy: StrategySpec | None = None
    strategies: list[StrategySpec] | None = Field(None, min_length=1)
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    grid: Axes | None = None
    zip_: Axes | None = Field(None, alias="zip")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    budget: BudgetCaps = Field(default_factory=dict)
    concurrency: Count = 64
    subsample: bool = Field(True, description="one generation at the largest N for sample-based strategies")
    output: OutPath = Field(None, description="output folder (default results/<file name>)")


def schema() -> dict[str, Any]:
    """The file's JSON schema, plus each registered strategy's declarations and parameter
    schema (from its constructor) under `x-strategies`: what `params` and grid axes accept."""
    out = SweepFile.model_json_schema(by_alias=True)
    out["x-strategies"] = {name: _strategy_schema(cls) for name, cls in load_all("strategy").items()}
    return out


def _strategy_schema(cls: Any) -> dict[str, Any]:
    model = cls.params_model()
    try:
        params = model.model_json_schema()
    except Exception:  # a parameter typed by a class (DeepPrune's judge): names and defaults only
        params = {"properties": {k: {"default": repr(f.default)} for k, f in model.model_fields.items()}}
    return {"size": cls.size_param(), "aliases": dict(cls.aliases), "default_verifier": cls.default_verifier,
            "subsamplable": cls.subsamplable if isinstance(cls.subsamplable, bool) else "per configuration",
            "params": params}


class SweepError(TTSError):
    """One line: `FILE: field.path: problem`."""

    def __init__(self, file: str | Path, path: str, problem: str):
        super().__init__(f"{file}: {path + ': ' if path else ''}{' '.join(str(problem).split())}")


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys valid at `loc` (for did-you-mean on an unknown key)."""
    for part in loc:
        if isinstance(part, int):
            continue
        f = next((f for k, f in model.model_fields.items() if (f.alias or k) == part), None)
        if f is None:
            return []
        inner = _model_in(f.annotation)
        if inner is None:
            return []
        model = inner
    return [f.alias or k for k, f in model.model_fields.items()]


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        m = _model_in(arg)
        if m is not None:
            return m
    return None


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def paths_from(folder: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The file's relative paths (tasks' `data`, the model's `bank`, `output`) resolved against
    the file's folder, so a sweep file means the same from wherever `tts sweep` runs."""

    def at(value: Any) -> Any:
        relative = isinstance(value, str) and value and not Path(value).is_absolute()
        return os.path.normpath(folder / value) if relative else value

    raw = dict(raw)
    if isinstance(raw.get("tasks"), list):
        raw["tasks"] = [{**t, "data": at(t["data"])} if isinstance(t, dict) and "data" in t else t
                        for t in raw["tasks"]]
    if isinstance(raw.get("model"), dict) and "bank" in raw["model"]:
        raw["model"] = {**raw["model"], "bank": at(raw["model"]["bank"])}
    if "output" in raw:
        raw["output"] = at(raw["output"])
    return raw


def parse_file(path: str | Path) -> SweepFile:
    """Read (bounded) and validate the file's structure (names and parameters: `plan`)."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise SweepError(path, "", f"a sweep file is a YAML mapping (model, tasks, strategy, grid, ...), "
                         f"got {type(raw).__name__}")
    try:
        return SweepFile.model_validate(paths_from(path.parent, raw))
    except ValidationError as e:
        errs = e.errors()
        err = errs[0]
        loc = list(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_at(SweepFile, loc[:-1])
            problem = f"unknown key '{key}'{did_you_mean(key, valid)}; valid: {', '.join(valid)}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problem = f"{msg} (got {err.get('input')!r:.60})" if "input" in err else msg
        more = f" (and {len(errs) - 1} more problem{'s' * (len(errs) > 2)})" if len(errs) > 1 else ""
        loc = [x for x in loc if not (isinstance(x, str) and x.startswith("function-after"))]
        raise SweepError(path, _path(loc), problem + more) from None
