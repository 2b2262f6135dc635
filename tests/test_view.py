"""`tts view` and the details beside result records.

The data are real runs through THE pipeline (`bench`, `tts sweep`): the CPU sweep
experiments/math100_replay_cpu.yaml replayed from the math100 bank, and one results file of
runs on the scripted generators where a run needs a known search tree, an equivalence judge,
token confidences or thinking markers (beam search and particle filtering on the scripted tree
and its table PRM, DeepConf, DeepPrune, budget forcing), plus one whose problem, traces,
answers and tree steps are script-injection payloads. The site is built with `tts view` and
driven in a real headless Chromium (tests/browser.py): the tests assert on the rendered DOM and
save screenshots in the test's temporary folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import Browser, chromium
from scripted import ScriptedGenerator
from scripted_tree import DELIM, TablePRM, TreeGenerator
from test_deepprune import JudgingScripted

from tts.cli import main
from tts.experiment.details import DETAILS, DetailsIndex, DetailsWriter, details_of, details_path, fit
from tts.experiment.evaluate import BenchConfig, bench
from tts.experiment.store import ResultStore, load_records
from tts.thinking import Markers
from tts.types import Problem, Result, Trace

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ASSETS = Path(__file__).resolve().parents[1] / "tts" / "view" / "assets"

# Script-injection payloads: each would change the page's title or set window.__pwned if it ever
# became markup or code instead of text.
XSS = [
    "<script>document.title='pwned';window.__pwned=1</script>",
    "<img src=x onerror=\"document.title='pwned';window.__pwned=2\">",
    "</script><script>window.__pwned=3</script>",
    "<a href=\"javascript:window.__pwned=4\">click</a>",
    "<svg onload=\"window.__pwned=5\"></svg>",
]


def k(*steps: str) -> str:
    return "".join(s + DELIM for s in steps)


TREE = {  # beam search with n=4, beam_width=2 over it keeps s2, s4, then s4a, s2b; paths end boxed
    k(): ["s1", "s2", "s3", "s4"],
    k("s2"): ["s2a", "s2b"],
    k("s4"): ["s4a", "s4b"],
    k("s2", "s2a"): ["s2a1 \\boxed{1}"],
    k("s4", "s4b"): ["s4b1 \\boxed{2}"],
    k("s4", "s4a"): ["s4a1 \\boxed{8}", "s4a2 \\boxed{5}"],
    k("s2", "s2b"): ["s2b1 \\boxed{6}", "s2b2 \\boxed{8}"],
}
REWARDS = {"s1": 0.3, "s2": 0.9, "s3": 0.6, "s4": 0.8, "s2a": 0.2, "s2b": 0.5, "s4a": 0.7, "s4b": 0.4,
           "s2a1 \\boxed{1}": 0.5, "s4b1 \\boxed{2}": 0.5, "s4a1 \\boxed{8}": 0.93, "s4a2 \\boxed{5}": 0.6,
           "s2b1 \\boxed{6}": 0.3, "s2b2 \\boxed{8}": 0.1}


def words(n: int, answer: str) -> str:
    return " ".join(["w"] * (n - 1) + [f"\\boxed{{{answer}}}"])


async def _run(out: Path, strategy: str, n: int, problems: list[Problem], generator, verifier=None, **params):
    cfg = BenchConfig(task="math500", strategy=strategy, n=n, params=params, out=str(out), max_tokens=64,
                      model="scripted")
    store, chash, _ = await bench(cfg, generator=generator, verifier=verifier, problems=problems)
    store.close()
    return chash


@pytest.fixture(scope="module")
async def mixed(tmp_path_factory) -> Path:
    """One results file: a run of each strategy whose view is its own, and the payload run."""
    out = tmp_path_factory.mktemp("mixed") / "runs.jsonl"
    q = Problem("tree-1", "What is the answer?", answer="8")
    await _run(out, "beam_search", 4, [q], TreeGenerator(TREE), TablePRM(REWARDS), beam_width=2)
    await _run(out, "particle_filter", 4, [q], TreeGenerator(TREE), TablePRM(REWARDS), max_steps=3)
    confident, shaky = -3.0, -0.05  # top-2 rows [lp, lp - 1]: confidence 3.5 vs 0.55
    conf = [(words(12, "42"), confident)] * 4 + [(words(12, "42"), confident), (words(12, "13"), shaky)] * 2
    await _run(out, "deepconf", 8, [Problem("conf-1", "What is 6 * 7?", answer="42")], ScriptedGenerator(conf),
               warmup=4, keep=0.9, window=5, top_k=2)
    groups = [f"{g} " + " ".join(["w"] * 12) + f" \\boxed{{{a}}}" for g, a in
              (("alpha", 3), ("beta", 4), ("alpha", 3), ("alpha", 3), ("beta", 4))]
    await _run(out, "deepprune", 5, [Problem("prune-1", "What is 1 + 2?", answer="3")], JudgingScripted(groups),
               prefix_tokens=4)
    forced = ScriptedGenerator(["t1 t2 </think> x"] * 4 + ["so \\boxed{7}"], markers=Markers())
    await _run(out, "budget_forcing", 1, [Problem("wait-1", "What is 3 + 4?", answer="7")], forced,
               budget=100, extensions=3)
    evil_tree = {k(): [XSS[1], XSS[4]], k(XSS[1]): [XSS[0] + " \\boxed{1}"], k(XSS[4]): [XSS[3] + " \\boxed{2}"]}
    evil_q = Problem("evil-" + XSS[2], "Solve " + XSS[0] + XSS[1] + XSS[2] + XSS[3], answer=XSS[1])
    await _run(out, "beam_search", 2, [evil_q], TreeGenerator(evil_tree), TablePRM({}, default=0.5), beam_width=1)
    evil = [XSS[i] + f" so \\boxed{{{XSS[i]}}}" for i in range(len(XSS))]
    await _run(out, "self_consistency", 5, [evil_q], ScriptedGenerator(evil))
    await _run(out, "self_consistency", 2, [Problem("down-1", "What is 2 + 2?", answer="4")], Broken(["x"]))
    return out


class Broken(ScriptedGenerator):
    """A FAKE backend that fails every call (a fault: a failed record, retried by a resume)."""

    async def generate(self, req):
        raise RuntimeError("backend down")


@pytest.fixture(scope="module")
def sweep(math100_bank, tmp_path_factory) -> Path:
    """`tts sweep experiments/math100_replay_cpu.yaml` (its bank: the math100 fixture's)."""
    work = tmp_path_factory.mktemp("sweep")
    (work / "banks").mkdir()
    (work / "banks" / "math100").symlink_to(math100_bank.path)
    (work / "experiments").mkdir()  # the file's paths are relative to its folder: ../banks/math100
    copy = work / "experiments" / "math100_replay_cpu.yaml"
    copy.write_text((EXPERIMENTS / "math100_replay_cpu.yaml").read_text())
    assert main(["sweep", str(copy), "--out", str(work / "out")]) == 0
    return work / "out"


@pytest.fixture(scope="module")
def browser():
    exe, why = chromium()
    if exe is None:
        pytest.skip(why)
    b = Browser(exe)
    yield b
    b.close()


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def details(path: Path) -> dict[tuple, dict]:
    ix = DetailsIndex(details_path(path))
    return {key: json.loads(ix.get(key)) for key in ix.spans}


# -- the details file --------------------------------------------------------------------
def test_a_replayed_bench_writes_every_records_details_beside_it(math100_bank, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
            "--strategy", "self_consistency", "-n", "4", "--limit", "6", "--out", str(out)]
    assert main(args) == 0
    recs, det = records(out), details(out)
    assert len(recs) == 6 and set(det) == {(r["problem_id"], r["config_hash"], r["seed"]) for r in recs}
    bank = {k: math100_bank.get(k) for k in math100_bank.keys()}
    for r in recs:
        assert DETAILS not in r
        d = det[(r["problem_id"], r["config_hash"], r["seed"])]
        assert d["question"] == bank[r["problem_id"]].question
        assert [t["answer"] for t in d["traces"]] == r["answers"]
        texts = {s.text for s in bank[r["problem_id"]].samples}
        assert all(t["text"] in texts and t["finish"] and t["tokens"] > 0 for t in d["traces"])
    spec = DetailsIndex(details_path(out)).specs[recs[0]["config_hash"]]
    assert spec["strategy"] == "self_consistency" and spec["params"] == {"n": 4}
    lines = details_path(out).read_text().count("\n")
    assert main(args) == 0 and details_path(out).read_text().count("\n") == lines  # a resume adds nothing


def test_a_sweep_keeps_details_beside_its_results_and_reads_only_results(sweep):
    assert (sweep / "results.details.jsonl").exists()
    recs = load_records(sweep)  # the details file is not a results file
    assert len(recs) == 12 * 2 * 4 * 5
    ix = DetailsIndex(sweep / "results.details.jsonl")
    assert all((r["problem_id"], r["config_hash"], r["seed"]) in ix for r in recs)


def test_a_torn_details_line_is_cut_by_the_next_writer_and_skipped_by_readers(tmp_path):
    results = tmp_path / "r.jsonl"
    w = DetailsWriter(results)
    w.append(("p1", "h", 0), {"traces": [], "spec": {"strategy": "x"}})
    with open(details_path(results), "ab") as f:
        f.write(b'{"problem_id": "p2", "config_hash": "h", "se')  # a crash mid-write
    assert set(DetailsIndex(details_path(results)).spans) == {("p1", "h", 0)}
    DetailsWriter(results).append(("p2", "h", 0), {"traces": [{"text": "again"}]})
    lines = details_path(results).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)  # spec, p1, p2: the torn one is gone
    # a key written twice (a crash between details and record, then a resume): the latest wins
    DetailsWriter(results).append(("p2", "h", 0), {"traces": [{"text": "latest"}]})
    assert json.loads(DetailsIndex(details_path(results)).get(("p2", "h", 0)))["traces"][0]["text"] == "latest"


def test_the_store_writes_a_records_details_beside_it_not_in_it(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl", writer=True)
    rec = {"problem_id": "p", "config_hash": "h", "seed": 0, "answer": "1", DETAILS: {"traces": []}}
    store.append(rec)
    assert DETAILS not in rec and DETAILS not in records(tmp_path / "r.jsonl")[0]
    assert ("p", "h", 0) in DetailsIndex(details_path(tmp_path / "r.jsonl"))
    store.close()


def test_big_or_unserialisable_telemetry_is_summarised_with_a_marker_never_dropped():
    got = fit(list(range(100_000)), cap=1000)
    assert got["truncated"] and got["total"] == 100_000 and 0 < got["kept"] < 1000
    assert got["items"] == list(range(got["kept"]))
    assert fit("x" * 5000, cap=100) == {"truncated": True, "total": 5000, "kept": 100, "text": "x" * 100}
    t = Trace("y" * 300_000, 5, "stop", answer="1")
    r = Result("p", "1", [t], telemetry={"obj": object(), "tree": None, "ok": [1]},
               details={"curve": [[i, 0.5] for i in range(100_000)]})
    d = details_of(r, Problem("p", "q"))
    assert d["telemetry"]["obj"]["unserialisable"] == "object"  # the record could not keep it
    assert d["view"]["curve"]["truncated"] and d["view"]["curve"]["total"] == 100_000
    assert d["traces"][0]["text"].endswith("[... 100000 more characters not stored]")
    assert "ok" not in d.get("telemetry", {})  # the record keeps what JSON can hold


def test_deepconf_curve_keeps_token_positions_and_the_lowest_group():
    from strategies.deepconf import confidence_curve

    confs = [1.0] * 300
    confs[150] = -5.0  # every window holding it has mean (9 - 5) / 10
    curve = confidence_curve(confs, 10, points=16)
    assert curve[0][0] == 10 and curve[-1][0] == 300 and len(curve) <= 16 + 3
    assert min(y for _, y in curve) == pytest.approx(0.4)
    assert confidence_curve([2.0, 4.0], 10) == [[2, 3.0]]  # shorter than a window: its mean


def test_the_search_tree_is_stored_node_link_with_rewards_and_statuses(mixed):
    recs = [r for r in records(mixed) if r["strategy"] == "beam_search" and r["problem_id"] == "tree-1"]
    (rec,) = recs
    tree = details(mixed)[(rec["problem_id"], rec["config_hash"], rec["seed"])]["tree"]
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert len(nodes) == rec["telemetry"]["nodes"]
    for n in nodes.values():
        if n["parent"] is not None:
            assert n["reward"] == REWARDS[n["text"]]
    assert [nodes[i]["status"] for i in tree["paths"]] == ["path"] * len(rec["answers"])
    assert {nodes[i]["text"] for i in nodes if nodes[i]["status"] == "expanded"} >= {"s2", "s4", "s4a", "s2b"}
    assert {nodes[i]["text"] for i in nodes if nodes[i]["status"] == "pruned"} == {"s1", "s3", "s2a", "s4b"}
    assert rec["answer"] == "8" and rec["correct"]


# -- the site in a real browser ----------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_site(sweep, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("sites") / "sweep"
    assert main(["view", str(sweep), "--out", str(site)]) == 0
    return site


@pytest.fixture(scope="module")
def mixed_site(mixed, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("sites") / "mixed"
    assert main(["view", str(mixed), "--out", str(site)]) == 0
    return site


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def url(site: Path, page: str) -> str:
    return (site / page).as_uri() if "?" not in page else (site / page.split("?")[0]).as_uri() + "?" + page.split("?")[1]


def test_overview_shows_the_reports_table_and_filters_it(browser, sweep_site, sweep, shots):
    from tts.experiment.report import rows

    table = rows(sweep)
    browser.open(url(sweep_site, "index.html"))
    assert browser.eval("document.querySelectorAll('#overview tbody tr').length") == len(table) == 8
    shown = browser.eval("[...document.querySelectorAll('#overview tbody tr td:nth-child(7)')].map(td => td.firstChild.textContent)")
    assert shown == [f"{100 * r['accuracy']:.1f}%" for r in table]
    assert browser.eval("document.querySelectorAll('svg.plot circle.point').length") == 8
    browser.screenshot(shots / "overview.png")
    browser.eval("(() => { const s = document.getElementById('f-strategy'); s.value = 'best_of_n'; s.dispatchEvent(new Event('change')); })()")
    assert browser.eval("document.querySelectorAll('#overview tbody tr').length") == 4
    browser.open(url(sweep_site, "index.html?n=8"))
    assert browser.eval("document.querySelectorAll('#overview tbody tr').length") == 2
    assert browser.errors == []


def test_problem_list_marks_each_configuration_and_seed(browser, sweep_site, sweep, shots):
    recs = load_records(sweep)
    browser.open(url(sweep_site, "problems.html"))
    assert browser.eval("document.querySelectorAll('#problems tbody tr').length") == 12
    assert browser.eval("document.querySelectorAll('#problems .cell.ok').length") == sum(bool(r["correct"]) for r in recs)
    assert browser.eval("document.querySelectorAll('#problems .cell.bad').length") == sum(not r["correct"] for r in recs)
    browser.screenshot(shots / "problems.png")
    by_problem: dict[str, set] = {}
    for r in recs:
        by_problem.setdefault(r["problem_id"], set()).add(bool(r["correct"]))
    browser.open(url(sweep_site, "problems.html?show=allwrong"))
    assert browser.eval("document.querySelectorAll('#problems tbody tr').length") == sum(
        v == {False} for v in by_problem.values())
    assert browser.errors == []


def test_compare_pairs_two_configurations_as_the_report_does(browser, sweep_site, sweep, shots):
    from tts.experiment.report import compare, rows

    names = [f"{r['config']} n={r['n']}" for r in rows(sweep)]
    # the first pair that disagrees somewhere (so the side-by-side is exercised)
    a, b, want = next((a, b, w) for a in names for b in names if a != b and (w := compare(sweep, a, b))["only_a"])
    meta = browser.open(url(sweep_site, "index.html")) and browser.eval(
        "TTS.load('meta').then(m => m.configs.map(c => c.label))")
    ia, ib = meta.index(a), meta.index(b)
    browser.open(url(sweep_site, f"compare.html?a={ia}&b={ib}"))
    got = browser.eval("Object.fromEntries([...document.querySelectorAll('#paired tr')].map(tr => [tr.cells[0].textContent, tr.cells[1].textContent]))")
    assert int(got["paired runs (problem, seed)"]) == want["pairs"]
    assert int(got["only A right"]) == want["only_a"] and int(got["only B right"]) == want["only_b"]
    assert got["accuracy A"] == f"{100 * want['accuracy_a']:.1f}%"
    assert float(got["McNemar exact p"]) == pytest.approx(want["mcnemar_p"], rel=1e-2)
    assert browser.eval("document.querySelectorAll('#only-a li').length") == want["only_a"]
    browser.screenshot(shots / "compare.png")
    browser.click("#only-a li a")  # the first disagreement, side by side
    browser.wait("document.querySelectorAll('.pane').length === 2 && document.querySelectorAll('.trace').length > 0")
    assert browser.eval("[...document.querySelectorAll('.pane h2')].map(h => h.firstChild.textContent)") == [a, b]
    assert browser.eval("[...document.querySelectorAll('.pane .outcome')].map(o => o.className)") == [
        "outcome ok", "outcome bad"]
    browser.screenshot(shots / "side_by_side.png")
    assert browser.errors == []


def test_problem_page_shows_traces_votes_and_usage(browser, sweep_site, sweep, shots):
    recs = load_records(sweep)
    browser.open(url(sweep_site, "index.html"))
    labels = browser.eval("TTS.load('meta').then(m => m.configs.map(c => c.label))")
    c = labels.index("self_consistency n=4")
    browser.open(url(sweep_site, f"problem.html?p=3&a={c}:2"))
    pid = browser.eval("document.getElementById('problem-id').textContent")
    rec = next(r for r in recs if r["problem_id"] == pid and r["seed"] == 2 and r["strategy"] == "self_consistency"
               and len(r["answers"]) == 4)
    assert browser.eval("document.querySelectorAll('.pane .trace').length") == 4
    assert browser.eval("[...document.querySelectorAll('.trace .fact.answer code')].map(c => c.textContent)") == [
        a if a is not None else "none" for a in rec["answers"]]
    assert browser.eval("document.querySelector('.chosen-answer').textContent") == (rec["answer"] or "none")
    assert browser.eval("document.querySelectorAll('#votes tr').length") == len(rec["telemetry"]["votes"])
    usage = browser.eval("[...document.querySelectorAll('#usage tr')].map(tr => tr.cells[2].textContent)")
    assert usage[1] == f"{rec['usage']['completion_tokens']:,}"
    assert browser.eval("document.getElementById('gold').textContent") == rec["gold"]
    browser.screenshot(shots / "problem.png")
    assert browser.errors == []


def test_search_tree_is_interactive_with_rewards_on_hover_and_the_chosen_path(browser, mixed_site, mixed, shots):
    rec = next(r for r in records(mixed) if r["strategy"] == "beam_search" and r["problem_id"] == "tree-1")
    browser.open(url(mixed_site, "problem.html?p=0"))
    browser.wait("document.getElementById('tree')")
    assert browser.eval("document.querySelectorAll('#tree circle.node').length") == rec["telemetry"]["nodes"]
    tree = details(mixed)[(rec["problem_id"], rec["config_hash"], rec["seed"])]["tree"]
    s4a = next(n for n in tree["nodes"] if n["text"] == "s4a")
    browser.hover(f"#tree circle[data-node='{s4a['id']}']")
    tip = browser.eval("document.getElementById('tip').hidden ? '' : document.getElementById('tip').textContent")
    assert "reward 0.700" in tip and "s4a" in tip and "chosen path" in tip
    # the chosen path: root -> s4 -> s4a -> "s4a1 \boxed{8}" (the best-scored path answering 8)
    assert browser.eval("document.querySelectorAll('#tree path.edge.chosen').length") == 3
    assert browser.eval("document.querySelectorAll('#tree circle.node.pruned').length") == 4
    browser.click(f"#tree circle[data-node='{s4a['id']}']")
    assert browser.eval("[...document.querySelectorAll('#tree-pinned li pre')].map(p => p.textContent)") == ["s4", "s4a"]
    browser.screenshot(shots / "tree.png")
    assert browser.errors == []


@pytest.mark.engine
async def test_a_beam_search_on_the_engine_shows_its_tree(vllm_generator, browser, tmp_path, shots):
    """A real run: beam search on the vLLM CPU engine (tiny random model, judging its own steps)."""
    from test_search_engine import QUESTION, frequent_delimiter
    from verifiers.prm import LLMJudgePRM

    delim = await frequent_delimiter(vllm_generator)
    out = tmp_path / "beam.jsonl"
    cfg = BenchConfig(task="gsm8k", strategy="beam_search", n=8, out=str(out), max_tokens=16, temperature=1.0,
                      model="tiny", params={"beam_width": 2, "max_steps": 3, "delimiter": delim})
    store, _, _ = await bench(cfg, generator=vllm_generator, verifier=LLMJudgePRM(vllm_generator, delimiter=delim),
                              problems=[Problem("engine-1", QUESTION, answer="72")])
    store.close()
    (rec,) = records(out)
    tree = details(out)[("engine-1", rec["config_hash"], 0)]["tree"]
    assert len(tree["nodes"]) == rec["telemetry"]["nodes"] > 1
    assert main(["view", str(out), "--out", str(tmp_path / "site")]) == 0
    browser.open(url(tmp_path / "site", "problem.html?p=0"), "document.getElementById('tree')")
    assert browser.eval("document.querySelectorAll('#tree circle.node').length") == len(tree["nodes"])
    node = next(n for n in tree["nodes"] if n["reward"] is not None)
    browser.hover(f"#tree circle[data-node='{node['id']}']")
    assert browser.eval(f"document.getElementById('tip').textContent.includes('reward ' + TTS.num({node['reward']!r}))")
    assert float(browser.eval(f"document.querySelector(\"#tree circle[data-node='{node['id']}']\").dataset.reward")) == node["reward"]
    assert browser.eval("document.querySelectorAll('#tree path.edge.chosen').length") >= 1
    browser.screenshot(shots / "engine_tree.png")
    assert browser.errors == []


def test_strategy_views_deepconf_deepprune_particles_and_waits(browser, mixed_site, mixed, shots):
    recs = {r["strategy"]: r for r in records(mixed) if not r["problem_id"].startswith("evil")}
    browser.open(url(mixed_site, "problems.html"))
    ids = browser.eval("[...document.querySelectorAll('#problems tbody tr')].map(tr => tr.cells[1].textContent)")

    def page(strategy: str) -> None:
        rec = recs[strategy]
        labels = browser.eval("TTS.load('meta').then(m => m.configs.map(c => c.hash))")
        browser.open(url(mixed_site, f"problem.html?p={ids.index(rec['problem_id'])}&a={labels.index(rec['config_hash'])}:0"))
        browser.wait("document.querySelectorAll('.pane').length === 1")

    page("deepconf")
    tel = recs["deepconf"]["telemetry"]
    assert browser.eval("document.querySelectorAll('#deepconf-chart .conf').length") == 8
    assert browser.eval("document.querySelectorAll('#deepconf-chart .conf.stopped').length") == len(tel["stop_reasons"]) == 2
    assert browser.eval("!!document.getElementById('threshold')")
    assert browser.eval("[...document.querySelectorAll('.trace.stopped')].map(t => +t.dataset.trace)") == [5, 7]
    assert "by low_confidence at 5 tokens" in browser.eval("document.querySelector('.trace.stopped').textContent")
    browser.screenshot(shots / "deepconf.png")

    page("deepprune")
    clusters = recs["deepprune"]["telemetry"]["clusters"]
    assert len(clusters) == 2
    assert browser.eval("document.querySelectorAll('#clusters li').length") == len(clusters)
    assert browser.eval("document.querySelectorAll('#clusters .chip.member').length") == recs["deepprune"]["telemetry"]["pruned"]
    browser.screenshot(shots / "deepprune.png")

    page("particle_filter")
    weights = recs["particle_filter"]["telemetry"]["weights"]
    assert weights and browser.eval("document.querySelectorAll('#pf-chart circle.weight').length") == sum(map(len, weights))
    assert browser.eval("document.querySelectorAll('#tree circle.node').length") == recs["particle_filter"]["telemetry"]["nodes"]

    page("budget_forcing")
    assert browser.eval("document.querySelectorAll('mark.wait').length") == 3
    assert "3 Waits inserted" in browser.eval("document.getElementById('forcing').textContent")
    browser.screenshot(shots / "budget_forcing.png")
    assert browser.errors == []


def test_a_failed_run_shows_its_error_and_no_details(browser, mixed_site, mixed):
    rec = next(r for r in records(mixed) if r["problem_id"] == "down-1")
    assert rec["status"] == "failed"
    browser.open(url(mixed_site, "problems.html?show=failed"))
    assert browser.eval("[...document.querySelectorAll('#problems tbody tr')].map(tr => tr.cells[1].textContent)") == ["down-1"]
    assert browser.eval("document.querySelectorAll('#problems .cell.fail').length") == 1
    browser.click("#problems .cell.fail")
    browser.wait("document.querySelectorAll('.pane').length === 1")
    assert "failed: RuntimeError: backend down" in browser.eval("document.querySelector('.pane .outcome').textContent")
    assert "no details stored" in browser.eval("document.querySelector('.pane').textContent")
    assert browser.errors == []


def test_model_text_never_runs_and_shows_as_text(browser, mixed_site, shots):
    browser.open(url(mixed_site, "problems.html"))
    ids = browser.eval("[...document.querySelectorAll('#problems tbody tr')].map(tr => tr.cells[1].textContent)")
    evil = next(i for i, x in enumerate(ids) if x.startswith("evil-"))
    assert ids[evil] == "evil-" + XSS[2]
    both = f"problem.html?p={evil}&a=5:0&b=6:0"  # the payload tree beside the payload traces
    for page in ("index.html", "problems.html", "compare.html?a=5&b=6", f"problem.html?p={evil}", both):
        browser.open(url(mixed_site, page), "document.querySelectorAll('.pane').length === " + str(
            2 if page == both else 1 if "p=" in page else 0))
        browser.eval("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        for node in browser.eval("[...document.querySelectorAll('#tree circle.node')].map(c => c.dataset.node)"):
            browser.hover(f"#tree circle[data-node='{node}']")  # tooltips render step text
        assert browser.eval("window.__pwned === undefined")
        title = browser.eval("document.title")  # a payload would set it to 'pwned'
        assert title.endswith(" · runs.jsonl · tts view") and title != "pwned"
        assert browser.eval("document.querySelectorAll('main img, main svg[onload], main script, main [onerror]').length") == 0
        assert browser.eval("[...document.querySelectorAll('a')].every(a => !/^javascript:/i.test(a.getAttribute('href') || ''))")
    text = browser.eval("document.body.textContent")
    for payload in XSS:
        assert payload in text  # shown as text: the problem, its traces, answers, tree steps, vote tally
    assert browser.eval("document.getElementById('question').textContent") == "Solve " + XSS[0] + XSS[1] + XSS[2] + XSS[3]
    assert browser.eval("document.getElementById('gold').textContent") == XSS[1]
    browser.screenshot(shots / "payloads.png")
    assert browser.errors == []  # not even a blocked inline script


def test_the_pages_never_turn_data_into_markup():
    """Belt and braces for the browser test: no markup sink anywhere in the site's scripts."""
    for f in ASSETS.glob("*.js"):
        code = f.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "setTimeout(\"", "srcdoc"):
            assert sink not in code, f"{f.name} uses {sink}"
    for f in ASSETS.glob("*.html"):
        html = f.read_text()
        assert "script-src 'self'" in html and not re.search(r"<script>(?!</script>)", html)


def test_view_errors_are_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["view", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
