"""`tts sweep`: one-line validation errors, the plan, end-to-end sweeps replayed from the math100
bank (local, sharded, edited, on Ray, and `tts sweep` SIGKILLed mid-run and resumed), every file in
experiments/, and one sweep on the real tiny engine interrupted mid-run and resumed."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tts.experiment import sweep
from tts.experiment.evaluate import BenchConfig, prepare
from tts.cli import main
from tts.experiment.store import ResultStore, record_key, result_files

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


@pytest.fixture
def bank(math100_bank):
    return math100_bank


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def replay_sweep(bank, out, ns=(1, 2, 4), seeds=(0, 1), limit=8) -> str:
    return yaml.safe_dump({
        "model": {"backend": "replay", "bank": str(bank.path)},
        "tasks": [{"name": "math500", "limit": limit}],
        "strategies": [{"name": "best_of_n", "verifier": "recorded"}, {"name": "self_consistency"}],
        "grid": {"n": list(ns)},
        "seeds": list(seeds),
        "output": str(out),
    })


def test_a_label_is_one_line_whatever_its_parameters(tmp_path, shared_data):
    """A step delimiter "\n\n" in a run's label broke `tts report`'s markdown table (one run
    over three rows); it is shown with its escapes."""
    f = write(tmp_path, yaml.safe_dump({
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 1}],
        "strategy": {"name": "beam_search", "n": 4, "params": {"delimiter": "\n\n"}}, "output": str(tmp_path / "o")}))
    run = sweep.plan(f).runs[0]
    assert 'delimiter="\\n\\n"' in run.label and "\n" not in run.label and "\n" not in run.curve


# -- bad input ----------------------------------------------------------------------------------
GOOD = {"tasks": [{"name": "gsm8k", "data": "DATA", "limit": 2}], "strategy": {"name": "best_of_n"},
        "grid": {"n": [1, 2]}}


def _edit(change):
    doc = json.loads(json.dumps(GOOD))
    change(doc)
    return doc


@pytest.mark.parametrize("change, path, problem", [
    (lambda d: d.update(seed=[1]), "seed", "unknown key 'seed' (did you mean 'seeds'?)"),
    (lambda d: d["tasks"][0].update(limt=3), "tasks[0].limt", "unknown key 'limt' (did you mean 'limit'?)"),
    (lambda d: d.update(concurrency="many"), "concurrency", "valid integer"),
    (lambda d: d["strategy"].update(n=0), "strategy.n", "greater than or equal to 1"),
    (lambda d: d.update(grid={"n": []}), "grid.n", "empty list"),
    (lambda d: d.update(grid={}), "grid", "empty"),
    (lambda d: d["strategy"].update(name="best_of_m"), "strategy.name",
     "unknown strategy 'best_of_m' (did you mean 'best_of_n'?)"),
    (lambda d: d.update(strategy={}, grid={"strategy": ["self_consistency", "beam_serch"]}), "grid.strategy[1]",
     "did you mean 'beam_search'"),
    (lambda d: d.update(grid={"beam_width": [2]}), "grid.beam_width[0]",
     "strategy 'best_of_n' takes no parameter 'beam_width'"),
    (lambda d: d.update(strategy=None, grid={"n": [2, 4]},
                        strategies=[{"name": "beam_search", "params": {"beam_width": 2}},
                                    {"name": "self_consistency", "params": {"beam_width": 2}}]),
     "strategies[1].params.beam_width", "strategy 'self_consistency' takes no parameter 'beam_width'"),
    (lambda d: d.update(zip={"n": [1, 2], "select": ["max"]}), "zip", "equal lengths"),
    (lambda d: d["tasks"][0].update(name="gsm9k"), "tasks[0].name", "did you mean 'gsm8k'"),
    (lambda d: d["strategy"].update(verifier="confidense"), "strategy.verifier", "did you mean 'confidence'"),
    (lambda d: d.update(budget={"tokens": 5}), "budget", "unknown budget cap tokens"),
    (lambda d: d["strategy"].update(params={"select": "min"}), "strategy", "select: Input should be 'max' or 'weighted'"),
    (lambda d: d.update(model={"backend": "replay", "bank": "/nonexistent"}), "model.bank", "not a trace bank"),
])
def test_each_bad_file_gets_one_line_naming_file_path_and_problem(change, path, problem, tmp_path, capsys,
                                                                  shared_data):
    doc = _edit(change)
    doc["tasks"][0]["data"] = str(shared_data / "gsm8k_test.jsonl")
    doc["output"] = str(tmp_path / "out")
    f = write(tmp_path, yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))
    assert main(["sweep", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {f}: {path}: "), err
    assert problem in err[0]
    assert not (tmp_path / "out").exists()  # nothing started


def test_yaml_syntax_and_missing_data_errors(tmp_path, capsys):
    f = write(tmp_path, "tasks: [{name: gsm8k\nstrategy: {name: best_of_n}\n")
    assert main(["sweep", str(f)]) == 2
    assert re.match(rf"error: {re.escape(str(f))}: line \d+: not valid YAML", capsys.readouterr().err)
    f = write(tmp_path, "tasks: [{name: gsm8k, data: /no/such.jsonl}]\nstrategy: {name: best_of_n}\n")
    assert main(["sweep", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {f}: tasks[0].data: ") and "/no/such.jsonl" in err


def test_schema_is_printed(capsys):
    assert main(["sweep", "schema"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"grid", "zip", "seeds", "tasks", "strategies", "budget", "output"} <= set(s["properties"])
    assert s["additionalProperties"] is False


def test_grid_zip_and_blocks_expand(shared_data, tmp_path):
    f = write(tmp_path, yaml.safe_dump({
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "slice": [3, 9], "limit": 4}],
        "strategies": [{"name": "beam_search", "zip": {"n": [4, 8], "beam_width": [2, 4]}},
                       {"name": "self_consistency", "grid": {"n": [2, 4]}}],
        "grid": {"temperature": [0.5, 1.0]}, "seeds": [0, 1], "subsample": False,
    }))
    p = sweep.plan(f)
    assert [q.id for q in p.problems[0]] == [f"gsm8k/{i}" for i in range(3, 7)]
    assert len(p.runs) == 2 * (2 + 2) * 2 and len(p.jobs) == len(p.runs)
    beams = {(r.cfg.n, r.cfg.params["beam_width"], r.cfg.temperature) for r in p.runs if r.cfg.strategy == "beam_search"}
    assert beams == {(4, 2, 0.5), (8, 4, 0.5), (4, 2, 1.0), (8, 4, 1.0)}
    # the hash is exactly `tts bench`'s for the same configuration
    r = next(r for r in p.runs if r.cfg.strategy == "self_consistency")
    assert r.config_hash == prepare(BenchConfig(task="gsm8k", strategy="self_consistency", n=r.cfg.n,
                                                temperature=r.cfg.temperature), problems=[]).config_hash
    assert sweep.plan(f).runs[5].config_hash == p.runs[5].config_hash  # stable
    # shards take every k-th job
    assert [j.runs[0].label for j in p.shard(1, 3)] == [j.runs[0].label for j in p.jobs[1::3]]


def test_the_shared_engine_reads_the_whole_model_block(shared_data, tmp_path):
    """The engine a sweep shares is built from the same model block as each run (it once lost
    think_open/think_close: budget forcing on a model of no known family failed at the first run)."""
    model = {"name": "some-model", "max_model_len": 2048, "enforce_eager": True, "timeout": 30, "retries": 1,
             "think_open": "<reason>", "think_close": "</reason>"}
    f = write(tmp_path, yaml.safe_dump({
        "model": model, "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 2}],
        "strategy": {"name": "self_consistency"}, "grid": {"n": [1, 2]},
    }))
    p = sweep.plan(f)
    for cfg in [p.sweep.model] + [r.cfg for r in p.runs]:  # the engine is built from p.sweep.model
        assert (cfg.model, cfg.think_open, cfg.think_close) == ("some-model", "<reason>", "</reason>")
        assert (cfg.max_model_len, cfg.enforce_eager, cfg.retries) == (2048, True, 1)


def test_dry_run_prints_the_plan_and_runs_nothing(bank, tmp_path, capsys, shared_data):
    f = write(tmp_path, replay_sweep(bank, tmp_path / "out"))
    assert main(["sweep", str(f), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "12 runs, 96 run x problem pairs" in err and "generated tokens: none" in err
    assert not (tmp_path / "out").exists()
    live = write(tmp_path, yaml.safe_dump({
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 5}],
        "strategies": [{"name": "self_consistency", "grid": {"n": [2, 8]}}, {"name": "beam_search", "n": 4}],
        "sampling": {"max_tokens": 100}}), "live.yaml")
    assert main(["sweep", str(live), "--dry-run"]) == 0
    err = capsys.readouterr().err
    # self-consistency is generated once at n=8 (5 x 8 x 100), beam search 5 x 4 x 100
    assert "at n=8, then replay" in err and "at most 6,000" in err


# -- end to end on replay -----------------------------------------------------------------------
async def test_replay_sweep_resumes_edits_and_shards(bank, tmp_path):
    out = tmp_path / "out"
    f = write(tmp_path, replay_sweep(bank, out))
    p = sweep.plan(f)
    store = await sweep.run_local(p)
    assert len(store.records) == 12 * 8
    # a record is keyed like tts bench's: the same configuration there has the same hash
    direct = prepare(BenchConfig(task="math500", strategy="self_consistency", n=2, backend="replay",
                                 bank=str(bank.path)), problems=[]).config_hash
    assert any(r["config_hash"] == direct for r in store.records.values())
    # re-running does nothing
    fresh = []
    await sweep.run_local(sweep.plan(f), on_result=fresh.append)
    assert fresh == []
    # an edited file: n=4 dropped, n=8 added; n=1 and n=2 records are kept, n=4's ignored
    f2 = write(tmp_path, replay_sweep(bank, out, ns=(1, 2, 8)))
    await sweep.run_local(sweep.plan(f2), on_result=fresh.append)
    assert len(fresh) == 2 * 2 * 8 and {r["usage"]["generator_calls"] for r in fresh} == {1}
    from tts.experiment.report import rows

    table = rows(out)
    assert sorted({r["n"] for r in table}) == [1, 2, 8] and all(r["records"] == 16 for r in table)
    # shards: 0/2 and 1/2 into another folder give the same records, in two files
    out2 = tmp_path / "sharded"
    p2 = sweep.plan(f2, out=out2)
    for i in (0, 1):
        await sweep.run_local(p2, (i, 2))
    assert [x.name for x in result_files(out2)] == ["results.shard0of2.jsonl", "results.shard1of2.jsonl"]
    assert (out2 / "results.shard0of2.details.jsonl").exists()  # each shard's details beside it
    mine = {k: r["answer"] for k, r in ResultStore(out / "results.jsonl").records.items()
            if r["config_hash"] in {x.config_hash for x in p2.runs}}
    theirs = {(r["problem_id"], r["config_hash"], r["seed"]): r["answer"] for r in sweep.load_records(out2)}
    assert mine == theirs and len(theirs) == 12 * 8


def test_ray_executor_matches_local(bank, tmp_path):
    """Ray on a local 2-CPU cluster, two actors. The backend is a replay of the imported math100
    bank, so the actors need no vLLM engine (one engine per actor is what a GPU cluster runs);
    the records streamed back to the driver must equal the local executor's."""
    ray = pytest.importorskip("ray")
    f = write(tmp_path, replay_sweep(bank, tmp_path / "ray", ns=(2, 4), seeds=(0,), limit=6))
    local = sweep.run_sweep(sweep.plan(f, out=tmp_path / "local"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = []
        store = sweep.run_sweep(sweep.plan(f), executor="ray", actors=2, on_result=got.append)
    finally:
        ray.shutdown()
    assert len(got) == len(store.records) == 4 * 6
    strip = lambda rs: {k: (r["answer"], r["correct"], r["usage"]["completion_tokens"]) for k, r in rs.items()}  # noqa: E731
    assert strip(store.records) == strip(local.records)
    assert len((tmp_path / "ray" / "results.jsonl").read_text().splitlines()) == 24  # only the driver wrote


# -- a real kill --------------------------------------------------------------------------------
def _tts(*args: str, log: Path) -> subprocess.Popen:
    """`python -m tts.cli ARGS` in its own process (stderr to `log`)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "tts.cli", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def _finish(proc: subprocess.Popen, log: Path) -> None:
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _stable(rec: dict) -> dict:
    """A record without what legitimately differs between two runs: when it finished, how long it took."""
    return {**{k: v for k, v in rec.items() if k != "finished_at"},
            "usage": {k: v for k, v in rec["usage"].items() if k != "wall_seconds"}}


def _report_csv(out: Path) -> list[dict]:
    assert main(["report", str(out)]) == 0
    with open(out / "report.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(f)]


def test_sweep_killed_mid_run_resumes_to_the_uninterrupted_report(bank, tmp_path, capsys):
    """`tts sweep FILE` in a subprocess is SIGKILLed once some records are on disk (a torn half
    line is appended as a kill mid-write would leave), then the same command finishes it. The
    folder ends with every (problem, config, seed) once, the same records (answers, correctness,
    tokens, scores) as the same sweep run uninterrupted elsewhere, and the same report."""
    seeds, ns, limit = (0, 1, 2), (1, 2, 4, 8), 12
    total = 2 * len(ns) * len(seeds) * limit  # 288 records, one fsync'ed write each, concurrency 1
    out, clean = tmp_path / "killed", tmp_path / "clean"
    f = write(tmp_path, yaml.safe_dump({
        "model": {"backend": "replay", "bank": str(bank.path)},
        "tasks": [{"name": "math500", "limit": limit}],
        "strategies": [{"name": "best_of_n", "verifier": "recorded"}, {"name": "self_consistency"}],
        "grid": {"n": list(ns)}, "seeds": list(seeds), "concurrency": 1, "output": str(out),
    }))
    log = tmp_path / "sweep.log"
    results = out / "results.jsonl"

    proc = _tts("sweep", str(f), log=log)
    killed = False
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            # kill past the first runs, inside one: some of a (config, seed)'s problems done, some not
            if results.exists() and results.read_bytes().count(b"\n") >= 40:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
    finally:
        if not killed and proc.poll() is None:
            proc.kill()  # the test failed some other way: leave no sweep running
    rc = proc.wait(timeout=30)
    assert killed and rc == -signal.SIGKILL, (
        f"the sweep ended (rc {rc}) before it was killed; make it bigger\n" + log.read_text()[-2000:])
    raw = results.read_bytes()
    kept = raw.count(b"\n")
    assert 40 <= kept < total  # killed mid-run
    first = raw.split(b"\n", 1)[0]
    with open(results, "ab") as fh:
        fh.write(first[: len(first) // 2])  # and a write torn by the kill

    _finish(_tts("sweep", str(f), log=log), log)  # the same command resumes
    assert "bytes after its last complete line (a write that was interrupted)" in log.read_text()
    _finish(_tts("sweep", str(f), "--out", str(clean), log=tmp_path / "clean.log"), tmp_path / "clean.log")

    resumed, straight = _records(out), _records(clean)  # every line parses: nothing torn is left
    keys = [record_key(r) for r in resumed]
    assert len(keys) == len(set(keys)) == total  # each record once
    assert {record_key(r) for r in straight} == set(keys) and len(straight) == total
    # replay is deterministic per seed, whichever run a record came from
    by_key = {record_key(r): _stable(r) for r in straight}
    assert {record_key(r): _stable(r) for r in resumed} == by_key
    a, b = _report_csv(out), _report_csv(clean)
    capsys.readouterr()
    assert len(a) == 2 * len(ns) and all(int(r["records"]) == len(seeds) * limit for r in a)
    assert a == b


def test_report_does_not_depend_on_the_order_records_landed_in(tmp_path):
    """A resumed, sharded or concurrent run appends records in another order than a straight
    one; the table (the seeded bootstrap interval included) must not change with it."""
    import random

    from tts.experiment import report

    (tmp_path / sweep.PLAN).write_text(json.dumps({
        "tasks": [{"name": "t", "problems": [f"t/{i}" for i in range(36)]}],
        "runs": [{"config_hash": "h", "seed": 0, "task_index": 0, "task": "t", "strategy": "s", "n": 1,
                  "label": "s n=1", "curve": "s", "source": "live"}]}))
    usage = dict.fromkeys(("prompt_tokens", "completion_tokens", "verifier_tokens", "generator_flops",
                           "verifier_flops", "wall_seconds"), 1)
    recs = [{"problem_id": f"t/{i}", "config_hash": "h", "seed": 0, "correct": i % 5 != 0, "usage": usage}
            for i in range(36)]

    def table(order):
        (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in order))
        return report.rows(tmp_path)

    first = table(recs)
    for seed in range(30):
        order = recs[:]
        random.Random(seed).shuffle(order)
        assert table(order) == first, seed


# -- experiments/ -------------------------------------------------------------------------------
# (every file dry-runs offline: tests/test_inputs.py)
def test_every_gpu_experiment_has_a_cpu_variant():
    stems = {p.stem for p in EXPERIMENTS.glob("*.yaml")}
    assert {s for s in stems if not s.endswith("_cpu") and s + "_cpu" not in stems} == set()


# -- the real engine: interrupted, resumed ------------------------------------------------------
class Crash(Exception):
    pass


@pytest.mark.engine
async def test_engine_sweep_interrupted_and_resumed(vllm_generator, tiny_model_dir, shared_data, tmp_path):
    """Two problems, Best-of-N at n=1,2 (one generation at n=2, subsampled) and self-consistency
    n=2 (live), max 16 tokens. The run dies after 3 records (as a SIGKILL would: records so far
    are on disk, plus a torn half line); the resumed run generates only what is missing and the
    store ends with each record exactly once."""
    out = tmp_path / "out"
    f = write(tmp_path, yaml.safe_dump({
        "model": {"name": str(tiny_model_dir), "max_model_len": 2048},
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 2}],
        "strategies": [{"name": "best_of_n", "grid": {"n": [1, 2]}}, {"name": "self_consistency", "n": 2}],
        "sampling": {"max_tokens": 16, "temperature": 1.0}, "seeds": [0], "output": str(out),
    }))
    p = sweep.plan(f)
    assert [len(j.runs) for j in p.jobs] == [2, 1] and p.jobs[0].bank is not None
    seen = []

    def crash_after_3(rec):
        seen.append(rec)
        if len(seen) == 3:
            raise Crash

    with pytest.raises(Crash):
        await sweep.run_local(p, on_result=crash_after_3, generator=vllm_generator)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    kept = len(lines)
    assert 3 <= kept < 6  # problems finishing in the same loop tick as the crash may land too
    with open(out / "results.jsonl", "a") as fh:
        fh.write(lines[0][: len(lines[0]) // 2])  # a write torn by the kill
    calls = []
    real = vllm_generator.generate

    async def counting(req):
        calls.append(req.n)
        return await real(req)

    vllm_generator.generate = counting
    try:
        fresh = []
        store = await sweep.run_local(sweep.plan(f), on_result=fresh.append, generator=vllm_generator)
    finally:
        del vllm_generator.generate
    assert len(fresh) == 6 - kept and len(store.records) == 6
    assert sum(calls) <= 2 * 2  # at most self-consistency's two problems (the bank was recorded first)
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = [(r["problem_id"], r["config_hash"], r["seed"]) for r in recs]
    assert len(keys) == len(set(keys)) == 6
    assert {r["config_hash"] for r in recs} == {r.config_hash for r in p.runs}
    sub = [r for r in recs if r["strategy"] == "best_of_n"]
    assert all(r["model"].startswith("replay:") for r in sub) and all(r["usage"]["completion_tokens"] > 0 for r in recs)
    from tts.experiment import report

    table = report.rows(out)
    assert len(table) == 3 and all(r["records"] == 2 for r in table)
    assert {r["source"].split(" ")[0] for r in table} == {"subsampled", "live"}
    assert all(r["flops"] > 0 for r in table)
    paths = report.write(out, table)
    assert any(x.name.startswith("acc_vs_flops") for x in paths)
