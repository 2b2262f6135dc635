"""The bounded YAML loader of sweep files (the option checks every surface shares are in
`tts.options`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tts.errors import TTSError

MAX_YAML_BYTES = 1 << 20  # a sweep file is a page of settings, never megabytes
MAX_YAML_NODES = 100_000  # node visits with aliases expanded (an alias bomb hits this at once)
MAX_YAML_DEPTH = 50


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
        _check_depth(path, text)
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


def _check_depth(path: Path, text: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH from the parser's events (iterative), before the
    composer, which recurses once per level (a file 3,000 levels deep was a RecursionError)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise TTSError(f"{path}: nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


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
