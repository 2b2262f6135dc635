"""A problem whose solving fails (a backend fault) is a failed record, never a finished one; a
resume retries exactly those; summaries count them apart. The generator is a scripted FAKE."""

from __future__ import annotations

import json

from scripted import ScriptedGenerator

from tts.errors import BackendError
from tts.experiment.evaluate import BenchConfig, bench, summarize
from tts.experiment.store import ResultStore
from tts.types import Problem

PROBLEMS = [Problem(f"t/{i}", f"question {i}?", "7") for i in range(5)]


class Flaky(ScriptedGenerator):
    """Raises BackendError for the problems in `bad` (as a cut-off stream would after its
    retries), answers the others."""

    def __init__(self, bad: set[str]):
        super().__init__(["so \\boxed{7}"])
        self.bad = bad

    async def generate(self, req):
        if any(q in req.messages[-1]["content"] for q in self.bad):
            raise BackendError("stream cut off after 3 retries")
        return await super().generate(req)


async def test_backend_faults_are_failed_records_and_a_resume_retries_them(tmp_path):
    out = tmp_path / "r.jsonl"
    cfg = BenchConfig(task="gsm8k", strategy="self_consistency", n=2, out=str(out), model="scripted")
    store, chash, _ = await bench(cfg, generator=Flaky({"question 1?", "question 3?"}), problems=PROBLEMS)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [r for r in recs if r["status"] == "failed"]
    assert sorted(r["problem_id"] for r in failed) == ["t/1", "t/3"]
    assert all("BackendError: stream cut off" in r["error"] and r["answer"] is None for r in failed)
    assert all(r["error"] is None and r["answer"] == "7" for r in recs if r["status"] == "finished")
    s = summarize(list(store.records.values()))
    assert s["problems"] == 5 and s["failed"] == 2 and s["accuracy"] == 1.0  # failures never answered

    healthy = Flaky(set())
    store, chash2, _ = await bench(cfg, generator=healthy, problems=PROBLEMS)
    assert chash2 == chash and healthy.calls <= 2 * 2  # only the two failed problems ran again
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 7  # 3 finished + 2 failed + 2 retried: the failures are superseded
    reopened = ResultStore(out)
    assert all(r["status"] == "finished" for r in reopened.records.values()) and len(reopened.records) == 5
    assert summarize(list(reopened.records.values()))["failed"] == 0
    keys = [(r["problem_id"], r["seed"]) for r in lines if r["status"] == "finished"]
    assert len(keys) == len(set(keys)) == 5  # no finished key twice


def test_report_counts_failed_records_apart(tmp_path):
    """`tts report`: failed records are a column of their own and never count as answers."""
    from tts.experiment import report

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "plan.json").write_text(json.dumps({
        "file": "s.yaml", "name": "s", "tasks": [{"name": "t", "problems": [f"t/{i}" for i in range(4)]}],
        "runs": [{"config_hash": h, "seed": 0, "task_index": 0, "task": "t", "strategy": "s", "n": 1,
                  "label": h, "curve": h, "source": "live"} for h in ("h", "g")],
    }))
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "verifier_tokens": 0, "generator_flops": 1.0,
             "verifier_flops": 0.0, "wall_seconds": 0.1, "total_tokens": 3}
    done = [{"problem_id": f"t/{i}", "config_hash": "h", "seed": 0, "status": "finished", "correct": True,
             "usage": usage} for i in (0, 1)]
    failed = [{"problem_id": f"t/{i}", "config_hash": h, "seed": 0, "status": "failed", "correct": None,
               "error": "BackendError: x"} for i, h in ((2, "h"), (3, "h"), (0, "g"))]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in done + failed))
    rows = {r["config_hash"]: r for r in report.rows(out)}
    assert rows["h"]["records"] == 2 and rows["h"]["failed"] == 2 and rows["h"]["accuracy"] == 1.0
    assert rows["g"]["records"] == 0 and rows["g"]["failed"] == 1
    assert any(p.suffix == ".png" for p in report.write(out, list(rows.values())))
