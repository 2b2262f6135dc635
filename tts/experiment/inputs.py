"""The one input boundary: what every CLI option and sweep field is checked against, at parse
time, before anything starts (pydantic validators shared by `BenchConfig`, the record options
and the sweep file), the bounded YAML loader, and the one-line form of a validation error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError

from tts.errors import TTSError
from tts.types import Budget

MAX_YAML_BYTES = 1 << 20  # a sweep file is a page of settings, never megabytes
MAX_YAML_NODES = 100_000  # node visits with aliases expanded (an alias bomb hits this at once)
MAX_YAML_DEPTH = 50


def check_budget(caps: dict[str, float]) -> dict[str, float]:
    valid = sorted(Budget.__dataclass_fields__)
    bad = sorted(set(caps) - set(valid))
    if bad:
        raise ValueError(f"unknown budget cap {', '.join(bad)}; valid: {', '.join(valid)}")
    for k, v in caps.items():
        if not v > 0:
            raise ValueError(f"budget cap {k} must be > 0, got {v}")
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


BudgetCaps = Annotated[dict[str, float], AfterValidator(check_budget)]
DataFile = Annotated[str | None, AfterValidator(check_data_file)]
OutPath = Annotated[str | None, AfterValidator(check_writable)]
Timeout = Annotated[float | None, Field(gt=0, description="seconds per request (openai backend)")]
Retries = Annotated[int | None, Field(ge=0, description="retries per request (openai backend)")]


def one_line(e: ValidationError, name: Any = None) -> str:
    """The first problem of a validation error, as `field: problem (got value)`; `name` maps a
    field location to what the user typed (an option name, a sweep path)."""
    errs = e.errors()
    err = errs[0]
    loc = [str(x) for x in err["loc"]]
    where = name(loc) if name else ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    got = f" (got {err['input']!r:.60})" if "input" in err and not isinstance(err["input"], dict) else ""
    more = f" (and {len(errs) - 1} more problem{'s' * (len(errs) > 2)})" if len(errs) > 1 else ""
    return f"{where + ': ' if where else ''}{' '.join(msg.split())}{got}{more}"


def option_name(loc: list[str]) -> str:
    return "--" + loc[0].replace("_", "-") if loc else ""


# -- YAML ---------------------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    """A YAML file read with bounds: size, UTF-8, alias expansion and nesting depth are checked
    before anything is constructed. A violation is one TTSError line naming the file."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise TTSError(f"{path}: larger than {MAX_YAML_BYTES >> 20} MiB; a sweep file is a page of settings")
        raw = path.read_bytes()
    except OSError as e:
        raise TTSError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    if b"\0" in raw:
        raise TTSError(f"{path}: a binary file, not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TTSError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(path, node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise TTSError(f"{path}: {where}not valid YAML ({getattr(e, 'problem', None) or e})") from None
    finally:
        loader.dispose()


def _check_graph(path: Path, root: yaml.Node) -> None:
    """Count node visits as construction would make them (an alias visits its anchor's whole
    subtree again), stopping at the first bound crossed, so a billion-laughs file costs
    MAX_YAML_NODES steps, not gigabytes."""
    visits = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        visits += 1
        if visits > MAX_YAML_NODES:
            raise TTSError(f"{path}: expands to more than {MAX_YAML_NODES:,} values (aliases); "
                           "write the settings out instead of nesting aliases")
        if depth > MAX_YAML_DEPTH:
            raise TTSError(f"{path}: nested deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend(((k, depth + 1), (v, depth + 1)))
