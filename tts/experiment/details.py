"""A problem-run's details, beside its result record: what `tts view` shows and a record leaves
out. Every trace (its text, thinking and answer parts, why it ended, where and by which rule a
strategy stopped it, tokens, answer, score), the search tree (node-link: each node's step text,
reward, and whether it was expanded, pruned or ended a final path), the strategy's view data
(`Result.details`) and the telemetry a record cannot hold, summarised.

A results file `X.jsonl` keeps them in `X.details.jsonl` (a sweep folder: beside each of its
`results*.jsonl`), one JSON object per line keyed like its record by (problem_id, config_hash,
seed). The store that writes the record writes its details first (`ResultStore.append` takes
them from the record's `DETAILS` key), so a record implies its details; lines follow the
store's crash rule (one write + fsync each; a writer reopening the file cuts a torn last line,
readers skip it). A key written twice (a crash between the two writes, then a resume) keeps
its latest line. The first line of a configuration written by a process carries its RunSpec
(`{"config_hash": ..., "spec": {...}}`), so a `tts bench` file can be labelled without a plan.

Size: strings, lists and trees are kept up to caps; whatever is cut says so
(`{"truncated": true, "total": N, "kept": K, ...}`), and a value JSON cannot hold is summarised
(`{"unserialisable": TYPE, "repr": ...}`): nothing is dropped silently. Lines are written
ASCII-escaped, so any text (lone surrogates included) is stored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tts import jsonl
from tts.types import Problem, Result, Trace

DETAILS = "details"  # the record key a pipeline hands a record's details to the store under
SUFFIX = ".details.jsonl"

TEXT_CAP = 200_000  # characters of one trace's text (a 32k-token reasoning trace fits)
NODE_TEXT_CAP = 4_000  # characters of one search-tree node's step text
NODES_CAP = 20_000  # search-tree nodes kept (the first ones: a kept node's parent is kept)
VALUE_CAP = 200_000  # bytes of JSON of one telemetry or view value

Key = tuple[str, str, int]


def details_path(results: str | Path) -> Path:
    """Where the details of the results file `results` are: `X.jsonl` -> `X.details.jsonl`."""
    p = Path(results)
    return p.with_name(p.name.removesuffix(".jsonl") + SUFFIX)


def is_details_file(path: str | Path) -> bool:
    return Path(path).name.endswith(SUFFIX)


# -- building ------------------------------------------------------------------------------
def details_of(result: Result, problem: Problem, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The details of one result (to put under the record's `DETAILS` key). Never raises: a
    failure to build them is stored as the reason, so the record itself is never lost."""
    try:
        stops = result.telemetry.get("stop_reasons") or {}
        out: dict[str, Any] = {
            "question": _cut(problem.question, TEXT_CAP),
            "traces": [trace_json(t, stops.get(i)) for i, t in enumerate(result.traces)],
        }
        tree = result.telemetry.get("tree")
        if tree is not None and hasattr(tree, "nodes"):
            out["tree"] = tree_json(tree, result.telemetry.get("paths") or [])
        # what the record leaves out: telemetry JSON cannot hold (summarised) and the view data
        left = {k: fit(v) for k, v in result.telemetry.items() if k != "tree" and not _plain_json(v)}
        if left:
            out["telemetry"] = left
        if result.details:
            out["view"] = {k: fit(v) for k, v in result.details.items()}
    except Exception as e:  # noqa: BLE001 - a view must never cost a result
        out = {"error": f"details not stored: {type(e).__name__}: {e}"}
    if spec is not None:
        out["spec"] = spec
    return out


def trace_json(t: Trace, stopped: str | None = None) -> dict[str, Any]:
    """One trace as the viewer reads it. Thinking and answer parts are spans of `text` in
    UTF-16 units (what a browser slices by), so the text is stored once."""
    text = _cut(t.text, TEXT_CAP)
    d: dict[str, Any] = {"text": text, "tokens": t.num_tokens, "finish": t.finish_reason, "answer": t.answer,
                         "score": _finite(t.score)}
    if t.stop_reason is not None:
        d["stop_reason"] = t.stop_reason
    if t.thinking is not None:
        d["thinking_tokens"] = t.thinking_tokens
        d["parts"] = _parts(t)
    if t.answer_from:
        d["answer_from"] = t.answer_from
    if t.prefix:
        d["prefix"] = _cut(t.prefix, TEXT_CAP)
    if t.steps:
        d["steps"] = [[s.num_tokens, _finite(s.score)] for s in t.steps]
    if stopped is not None:
        d["stopped"] = {"rule": stopped, "at_tokens": t.num_tokens}
    return d


def _parts(t: Trace) -> dict[str, Any]:
    """The thinking and answer parts as [start, end] spans of the text (or the strings
    themselves where they are not found in it)."""
    parts: dict[str, Any] = {}
    if t.thinking is not None:
        i = t.text.find(t.thinking)
        parts["thinking"] = [_u16(t.text[:i]), _u16(t.text[:i]) + _u16(t.thinking)] if i >= 0 else _cut(
            t.thinking, TEXT_CAP)
    if t.answer_part is not None:
        if t.text.endswith(t.answer_part):
            end = _u16(t.text)
            parts["answer"] = [end - _u16(t.answer_part), end]
        else:
            parts["answer"] = _cut(t.answer_part, TEXT_CAP)
    return parts


def tree_json(g: Any, paths: list[int]) -> dict[str, Any]:
    """A search tree (networkx DiGraph of `tts.search.tree`) as nodes with their parent, step
    text, reward (the latest step's), value (the verifier's aggregate), tokens and status:
    "path" (ends a final path, one of the result's traces), "expanded" (kept and continued),
    "complete" (ended, not among the final paths) or "pruned" (open, not continued)."""
    ends = set(paths)
    ids = sorted(g.nodes)
    nodes = []
    for i in ids[:NODES_CAP]:
        a = g.nodes[i]
        parents = list(g.predecessors(i))
        status = ("path" if i in ends else "expanded" if g.out_degree(i) else
                  "complete" if a.get("finish_reason") else "pruned")
        nodes.append({"id": i, "parent": parents[0] if parents else None, "text": _cut(a.get("text") or "", NODE_TEXT_CAP),
                      "reward": _finite(a.get("score")), "value": _finite(a.get("value")), "tokens": a.get("tokens"),
                      "depth": a.get("depth"), "finish": a.get("finish_reason"), "status": status})
    out: dict[str, Any] = {"nodes": nodes, "paths": list(paths)}
    if len(ids) > NODES_CAP:
        out["truncated"] = {"total": len(ids), "kept": NODES_CAP}
    return out


def fit(v: Any, cap: int = VALUE_CAP) -> Any:
    """`v` as plain JSON within `cap` bytes: numbers, strings, lists, dicts (keys as strings),
    numpy values converted, non-finite floats as None; a longer string or list keeps its head
    and says so; anything else is summarised by its type and repr."""
    v = plain(v)
    size = len(json.dumps(v))
    if size <= cap:
        return v
    if isinstance(v, str):
        return {"truncated": True, "total": len(v), "kept": cap, "text": v[:cap]}
    items = list(v.items()) if isinstance(v, dict) else v
    kept, used = 0, 0
    for item in items:
        used += len(json.dumps(item)) + 2
        if used > cap:
            break
        kept += 1
    head = dict(items[:kept]) if isinstance(v, dict) else items[:kept]
    return {"truncated": True, "total": len(items), "kept": kept, "items": head}


def plain(v: Any) -> Any:
    """`v` as plain JSON values: keys as strings, tuples and sets as lists, numpy values
    converted, non-finite floats as None, anything else summarised by its type and repr."""
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    if isinstance(v, float):
        return _finite(v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [plain(x) for x in v]
    tolist = getattr(v, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return plain(tolist())
    return {"unserialisable": type(v).__name__, "repr": repr(v)[:500]}


def _plain_json(v: Any) -> bool:
    """Whether a record keeps this telemetry value (`Result.record` keeps plain JSON types)."""
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _cut(s: str, cap: int) -> str:
    return s if len(s) <= cap else s[:cap] + f"\n[... {len(s) - cap} more characters not stored]"


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


# -- the file ------------------------------------------------------------------------------
class DetailsWriter:
    """Appends details lines to `details_path(results)`; opened (and a torn tail cut) on the
    first append, so a store that never gets details creates no file."""

    def __init__(self, results: str | Path):
        self.path = details_path(results)
        self._ready = False
        self._specs: set[str] = set()  # configurations whose spec this process wrote

    def append(self, key: Key, details: dict[str, Any]) -> None:
        details = dict(details)
        spec = details.pop("spec", None)
        lines = []
        if spec is not None and key[1] not in self._specs:
            lines.append({"config_hash": key[1], "spec": spec})
        lines.append({"problem_id": key[0], "config_hash": key[1], "seed": key[2], **details})
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            jsonl.cut_torn_tail(self.path)
            self._ready = True
        jsonl.append_line(self.path, data)  # one write: a crash tears at most this last line
        if spec is not None:
            self._specs.add(key[1])


class DetailsIndex:
    """Read-only index of a details file: the byte span of each key's latest complete line and
    the specs of its configurations; `get(key)` reads one line's JSON text back (validated JSON,
    so a page may embed it as is). A missing file is an empty index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.spans: dict[Key, tuple[int, int]] = {}
        self.specs: dict[str, dict[str, Any]] = {}
        self.bad = 0  # lines that are not JSON objects (skipped; the writer never makes them)
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            pos = 0
            for line in f:
                if not line.endswith(b"\n"):
                    break  # torn by an interrupted write
                try:
                    d = json.loads(line)
                    if "spec" in d:
                        self.specs[d["config_hash"]] = d["spec"]
                    else:
                        self.spans[(d["problem_id"], d["config_hash"], int(d["seed"]))] = (pos, len(line) - 1)
                except (ValueError, KeyError, TypeError):
                    self.bad += 1
                pos += len(line)

    def __contains__(self, key: Key) -> bool:
        return key in self.spans

    def get(self, key: Key) -> bytes | None:
        span = self.spans.get(key)
        if span is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(span[0])
            return f.read(span[1])
