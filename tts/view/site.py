"""The data of a `tts view` site, written as small script files the pages load on demand.

Pages are static (assets/); data lives in `data/` as `TTS.put(NAME, JSON);` scripts, loaded
with <script src> (a page opened from file:// may not fetch() JSON in Chromium):

    data/meta.js          the configurations (the report's table row, spec, seeds), tasks,
                          problem count, cost-of-pass frontier: all the overview needs
    data/matrix.js        per configuration, one character per (problem, seed): 1 right,
                          0 wrong, f failed, . no record (problem list, paired comparison)
    data/list/K.js        the K-th page of PAGE problems: id, task, gold, question's start
    data/ids.js           every problem id (loaded only to search by id)
    data/p/I.js           problem I: question, gold, its runs (configuration, seed, outcome)
    data/r/I_C.js         problem I under configuration C: each seed's record and details

So the overview of a 45,000-run sweep loads one small file, and a problem page two or three.
Every string stays data: the pages render it as text (never as markup).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tts.errors import TTSError
from tts.experiment.details import DetailsIndex, details_path, plain
from tts.experiment.store import Key, ResultStore, is_failed, load_records, result_files

PAGE = 100  # problems per list page
ASSETS = Path(__file__).parent / "assets"
TEMPLATE = "page.html.in"  # every page: the same head (the CSP), its name and its scripts
PAGES = {"index": ("overview", ["overview.js"]), "problems": ("problems", ["problems.js"]),
         "problem": ("problem", ["views.js", "problem.js"]), "compare": ("compare", ["compare.js"])}


def build(source: str | Path, out: str | Path | None = None) -> Path:
    """Write the site of `source` (a results file or a sweep folder) to `out` (default: `view/`
    in a sweep folder, `X.view/` beside a file `X.jsonl`); returns the path of its index.html."""
    from tts.experiment import report

    source = Path(source)
    runs = Runs.load(source)
    out = Path(out) if out is not None else (source if source.is_dir() else source.parent) / (
        "view" if source.is_dir() else f"{source.name.removesuffix('.jsonl')}.view")
    data = out / "data"
    for sub in ("list", "p", "r"):
        shutil.rmtree(data / sub, ignore_errors=True)  # a rebuild leaves no stale problem
        (data / sub).mkdir(parents=True)
    for f in ASSETS.iterdir():
        if f.name != TEMPLATE:
            shutil.copy(f, out / f.name)
    template = (ASSETS / TEMPLATE).read_text(encoding="utf-8")
    for name, (page, scripts) in PAGES.items():
        tags = "".join(f'<script src="{js}"></script>' for js in scripts)
        (out / f"{name}.html").write_text(template.replace("{page}", page).replace("{scripts}", tags), encoding="utf-8")

    plan = runs.plan
    problems: list[tuple[int, str]] = []  # (task index, id), task by task in plan order
    start: dict[int, int] = {}  # task index -> its first problem's index
    for ti, t in enumerate(plan["tasks"]):
        start[ti] = len(problems)
        problems += [(ti, pid) for pid in t["problems"]]
    where = {p: i for i, p in enumerate(problems)}
    wanted = {(r["config_hash"], r["seed"]): r for r in plan["runs"]}
    recs_of: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)  # (task index, hash) -> records
    for rec in runs.records:
        run = wanted.get((rec["config_hash"], rec["seed"]))
        if run is not None and (run["task_index"], rec["problem_id"]) in where:
            recs_of[(run["task_index"], rec["config_hash"])].append(rec)  # else outside the plan, as in the report

    # one configuration per row of the report's table (plan order, those with records)
    table = report.grouped(plan, runs.records, where=str(source))
    keys = list(dict.fromkeys((r["task_index"], r["config_hash"]) for r in plan["runs"]
                              if (r["task_index"], r["config_hash"]) in recs_of))
    configs = []
    by_cell: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)  # (problem, config) -> records
    for c, ((ti, chash), (row, _)) in enumerate(zip(keys, table, strict=True)):
        assert row["config_hash"] == chash
        label = row["config"] + (f" n={row['n']}" if row["n"] is not None else "")  # as `tts report --compare` names it
        seeds = sorted({r["seed"] for r in plan["runs"] if r["config_hash"] == chash and r["task_index"] == ti})
        configs.append({"i": c, "hash": chash, "task": row["task"], "task_index": ti, "label": label,
                        "curve": row["config"], "strategy": row["strategy"], "n": row["n"], "source": row["source"],
                        "seeds": seeds, "spec": runs.specs.get(chash),
                        "row": {k: v for k, v in row.items()
                                if k not in ("task", "config", "strategy", "n", "source", "config_hash")}})
        for rec in recs_of[(ti, chash)]:
            by_cell[(where[(ti, rec["problem_id"])], c)].append(rec)

    matrix = []  # per configuration: its task's problems x its seeds, one character each
    for c in configs:
        lo = start[c["task_index"]]
        cells = []
        for i in range(lo, lo + len(plan["tasks"][c["task_index"]]["problems"])):
            got = {r["seed"]: r for r in by_cell.get((i, c["i"]), ())}
            cells += [_outcome(got.get(s)) for s in c["seeds"]]
        matrix.append({"start": lo, "cells": "".join(cells)})
    stored = _write_problems(data, runs, problems, by_cell, [t["name"] for t in plan["tasks"]])
    _write(data / "ids.js", "ids", _dumps([pid for _, pid in problems]))
    _write(data / "matrix.js", "matrix", _dumps(matrix))
    meta = {
        "title": runs.title, "source": str(source), "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tasks": [t["name"] for t in plan["tasks"]], "configs": configs, "problems": len(problems), "page": PAGE,
        "records": sum(map(len, by_cell.values())), "details": stored,
        "frontier": report.frontier_cost_of_pass([r for r, _ in table]),
    }
    _write(data / "meta.js", "meta", _dumps(meta))
    for ix in runs.indexes:
        if ix.bad:
            print(f"note: {ix.path}: {ix.bad} lines are not details records; skipped", file=sys.stderr)
    return out / "index.html"


def _write_problems(data: Path, runs: "Runs", problems: list[tuple[int, str]],
                    by_cell: dict[tuple[int, int], list[dict[str, Any]]], tasks: list[str]) -> int:
    """The list pages, each problem's file and each (problem, configuration)'s runs with their
    details; returns how many runs have details."""
    configs_of: dict[int, list[int]] = defaultdict(list)
    for i, c in sorted(by_cell):
        configs_of[i].append(c)
    listing, stored = [], 0
    for i, (ti, pid) in enumerate(problems):
        question, gold, runs_here = None, None, []
        for c in configs_of.get(i, ()):
            entries = []
            for r in sorted(by_cell[(i, c)], key=lambda r: r["seed"]):
                raw = runs.details_line(r)
                if raw is not None:
                    stored += 1
                    if question is None:
                        question = json.loads(raw).get("question")
                gold = gold if gold is not None else r.get("gold")
                entries.append((r, raw))
                runs_here.append([c, r["seed"], _outcome(r)])
            _write(data / "r" / f"{i}_{c}.js", f"r/{i}_{c}", _run_file(entries))
        head = {"i": i, "id": pid, "task": tasks[ti], "gold": gold}
        _write(data / "p" / f"{i}.js", f"p/{i}", _dumps({**head, "question": question, "runs": runs_here}))
        listing.append({**head, "q": (question or "")[:200]})
    for k in range(0, max(len(listing), 1), PAGE):
        _write(data / "list" / f"{k // PAGE}.js", f"list/{k // PAGE}", _dumps(listing[k:k + PAGE]))
    return stored


def _outcome(rec: dict[str, Any] | None) -> str:
    """A run's character in the matrix: 1 right, 0 wrong, f failed, . no record."""
    return "." if rec is None else "f" if is_failed(rec) else "1" if rec.get("correct") else "0"


class Runs:
    """The records of a results file or a sweep folder, its plan (plan.json, or one made from
    the records of a `tts bench` file) and where each record's details are."""

    def __init__(self, title: str, plan: dict[str, Any], records: list[dict[str, Any]],
                 files: list[Path]):
        self.title, self.plan, self.records = title, plan, records
        self.indexes = [DetailsIndex(details_path(f)) for f in files]
        self.specs: dict[str, dict[str, Any]] = {}
        for ix in self.indexes:
            self.specs.update(ix.specs)

    @classmethod
    def load(cls, source: Path) -> "Runs":
        from tts.experiment.plan import PLAN_FILE

        if source.is_dir():
            if not (source / PLAN_FILE).exists():
                raise TTSError(f"{source} has no {PLAN_FILE}: not a sweep folder; give a sweep folder "
                               "(`tts sweep FILE` writes one) or a results .jsonl file")
            plan = json.loads((source / PLAN_FILE).read_text())
            return cls(plan.get("name") or source.name, plan, load_records(source), result_files(source))
        if not source.is_file():
            raise TTSError(f"{source} not found: give a results .jsonl file or a sweep folder")
        records = list(ResultStore(source).records.values())
        if not records:
            raise TTSError(f"{source} holds no result records")
        runs = cls(source.name, {}, records, [source])
        runs.plan = plan_of(records, runs.specs)
        return runs

    def details_line(self, rec: dict[str, Any]) -> bytes | None:
        """The record's details (one JSON object, as stored), or None."""
        for ix in self.indexes:
            raw = ix.get(_key(rec))
            if raw is not None:
                return raw
        return None


def plan_of(records: list[dict[str, Any]], specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A plan.json for the records of a `tts bench` file: tasks and problems in record order,
    one run per (configuration, seed), labelled from its spec by what tells it apart from the
    other configurations of its strategy."""
    tasks: dict[str, list[str]] = {}
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        task = r.get("task") or "task"
        ids = tasks.setdefault(task, [])
        if r["problem_id"] not in ids:
            ids.append(r["problem_id"])
        runs.setdefault((r["config_hash"], r["seed"]), {"config_hash": r["config_hash"], "seed": r["seed"],
                                                        "task": task, "strategy": r.get("strategy", "?"),
                                                        "source": "replay" if r.get("replay") else "live",
                                                        "model": r.get("model")})
    names = list(tasks)
    for run in runs.values():
        run["task_index"] = names.index(run["task"])
    # every spec field that differs between configurations of one strategy names them
    flat = {h: _flat(specs.get(h) or {}) for h in {r["config_hash"] for r in runs.values()}}
    for run in runs.values():
        spec = flat[run["config_hash"]]
        same = [flat[r["config_hash"]] for r in runs.values() if r["strategy"] == run["strategy"]]
        keys = sorted({k for s in same for k in s if k not in ("seed", "params.n") and
                       any(s.get(k) != same[0].get(k) for s in same)})
        run["n"] = spec.get("params.n")
        curve = " ".join([run["strategy"], *(f"{k.split('.')[-1]}={spec.get(k)}" for k in keys)])
        run["curve"] = curve if specs.get(run["config_hash"]) else f"{run['strategy']} [{run['config_hash'][:8]}]"
        run["label"] = f"{run['curve']} n={run['n']}" if run["n"] is not None else run["curve"]
        run["thinking_budget"] = spec.get("sampling.thinking_budget")
    return {"name": None, "tasks": [{"name": t, "problems": ids} for t, ids in tasks.items()],
            "runs": list(runs.values())}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (dict, list)) else v
    return out


def _key(rec: dict[str, Any]) -> Key:
    return (rec["problem_id"], rec["config_hash"], int(rec["seed"]))


def _dumps(v: Any) -> bytes:
    # ASCII-escaped JSON: every character of model text survives as an escape, and the file is
    # a plain JavaScript expression
    return json.dumps(plain(v), separators=(",", ":")).encode()


def _run_file(entries: list[tuple[dict[str, Any], bytes | None]]) -> bytes:
    """Each seed's record and its details line (embedded as stored: validated JSON)."""
    parts = [b'{"seed":' + str(int(r["seed"])).encode() + b',"record":' + _dumps(r) + b',"details":'
             + (raw if raw is not None else b"null") + b"}" for r, raw in entries]
    return b"[" + b",".join(parts) + b"]"


def _write(path: Path, name: str, payload: bytes) -> None:
    path.write_bytes(b"TTS.put(" + json.dumps(name).encode() + b"," + payload + b");\n")
