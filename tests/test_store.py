"""Stores that never lose a byte (issue 23): the result store and the bank's index split lines
at "\\n" only, readers never change a file, a line that cannot be read is skipped and named (never
a reason to drop what follows), and only the writer holding the lock repairs, and only the tail.

Before: `tts report` on a results file holding a bare "\\r" in one record (JSON whitespace) cut
4,000 records to 1,999 (bytes.splitlines ends a line at "\\r"; the piece after it looked torn and
the reader truncated the file there); an undecodable first line truncated the file to 0 bytes;
`tts bench` on such a file dropped and recomputed every record after the "\\r".
"""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from tts.bank import Bank, BankRecord, BankWriter, RecordedTrace, check  # noqa: E402
from tts.cli import main  # noqa: E402
from tts.experiment.store import ResultStore, load_records  # noqa: E402
from tts.jsonl import complete_lines  # noqa: E402

# Every character that some splitlines() takes for a line end, and the one that is a line end.
LINE_BREAKERS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def rec(i: int, text: str = "") -> dict:
    return {"problem_id": f"p{i}", "config_hash": "h", "seed": 0, "status": "finished", "answer": text,
            "usage": {"total_tokens": i}}


def line(r: dict) -> bytes:
    return (json.dumps(r, ensure_ascii=False) + "\n").encode()


def test_lines_end_at_newline_only():
    raw = b'{"a":\r1}\n{"b": "\xe2\x80\xa8 \xc2\x85"}\n{"c":'
    lines, good = complete_lines(raw)
    assert [n for n, _ in lines] == [1, 2] and raw[good:] == b'{"c":'
    assert [json.loads(x) for _, x in lines] == [{"a": 1}, {"b": "\u2028 \x85"}]


def test_4000_records_with_a_bare_cr_all_read_and_the_file_unchanged(tmp_path, capsys):
    """The reported case: 4,000 records, a bare "\\r" (JSON whitespace) inside record 2,000."""
    path = tmp_path / "results.jsonl"
    lines = [line(rec(i)) for i in range(4000)]
    lines[1999] = lines[1999].replace(b'{"problem_id"', b'{\r"problem_id"')
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    assert len(ResultStore(path).records) == 4000
    assert len(load_records(tmp_path)) == 4000
    assert path.read_bytes() == before and capsys.readouterr().err == ""


def test_undecodable_first_line_is_skipped_and_named_never_a_truncation(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"\xff\xfe garbage\r\x85\n" + b"".join(line(rec(i)) for i in range(10)) + b"not json\n")
    before = path.read_bytes()
    assert len(ResultStore(path).records) == 10 and path.read_bytes() == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"warning: {path}: skipped 2 lines that could not be read as a result record")
    assert "line 1: not UTF-8" in err[0] and "line 12: JSONDecodeError" in err[0]
    w = ResultStore(path, writer=True)  # the writer leaves them too and appends after them
    w.append(rec(10))
    w.close()
    assert path.read_bytes() == before + line(rec(10))


def test_writer_repairs_only_the_tail(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    body = line(rec(0)) + b"\xff\n" + line(rec(1))
    path.write_bytes(body + line(rec(2))[:-1])  # a whole record whose newline alone is missing
    assert len(ResultStore(path).records) == 3 and path.read_bytes() == body + line(rec(2))[:-1]
    ResultStore(path, writer=True).close()
    assert path.read_bytes() == body + line(rec(2))  # ended, not cut
    path.write_bytes(body + line(rec(2))[:17])  # torn mid-record
    ResultStore(path, writer=True).close()
    assert path.read_bytes() == body and "cutting the 17 bytes after its last complete line" in capsys.readouterr().err


# -- property tests ------------------------------------------------------------------------------
texts = st.text(alphabet=st.sampled_from(string.printable + LINE_BREAKERS + "é\u00a0\ufeff€𝔘"), max_size=30)
garbage = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),  # often not UTF-8
    st.text(alphabet=st.sampled_from(LINE_BREAKERS + "{}[]\":, abc"), max_size=20).map(str.encode),
    st.just(b""), st.just(b"\xff\xfe\x00"), st.just(b"[1, 2]"), st.just(b'{"problem_id": "x"}'),
)


@st.composite
def corrupted(draw):
    """A results file: records (random texts, some with "\\r" as JSON whitespace) with garbage
    lines between them, maybe a torn tail; and the records completely written."""
    n = draw(st.integers(0, 12))
    records = [rec(i, draw(texts)) for i in range(n)]
    chunks: list[bytes] = []
    for r in records:
        if draw(st.booleans()):
            chunks.append(draw(garbage) + b"\n")
        raw = line(r)
        if draw(st.booleans()):  # a bare \r (or \r\n ending) where JSON allows whitespace
            raw = draw(st.sampled_from([raw.replace(b", ", b",\r", 1), raw[:-1] + b"\r\n", b"\r" + raw]))
        chunks.append(raw)
    tail = draw(st.one_of(st.just(b""), garbage, st.sampled_from([line(rec(99))[:k] for k in (1, 5, 20)])))
    return b"".join(chunks) + tail, records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=corrupted())
def test_property_every_written_record_is_read_and_readers_never_write(tmp_path_factory, case):
    raw, records = case
    folder = tmp_path_factory.mktemp("p")
    path = folder / "results.jsonl"
    path.write_bytes(raw)
    want = {r["problem_id"]: r for r in records}
    assert {k[0]: r for k, r in ResultStore(path).records.items()} == want
    assert {r["problem_id"]: r for r in load_records(folder)} == want
    assert path.read_bytes() == raw  # no reader changed a byte
    w = ResultStore(path, writer=True)  # the writer changes the tail at most
    w.append(rec(1000))
    w.close()
    after = path.read_bytes()
    good = raw.rfind(b"\n") + 1
    assert after.startswith(raw[:good])
    assert {f"p{i}" for i in range(len(records))} | {"p1000"} <= {k[0] for k in ResultStore(path).records}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(texts.filter(bool), min_size=1, max_size=5, unique=True),
       junk=st.lists(garbage, max_size=3), tail=garbage)
def test_property_bank_index_reads_every_committed_entry_and_never_changes(tmp_path_factory, keys, junk, tail):
    """The bank's index: keys (problem ids) with line-breaking characters in them are one entry
    each; garbage lines are damage named by `check` (a damaged bank is refused, never read
    smaller), and neither `check` nor `Bank` changes a byte."""
    path = tmp_path_factory.mktemp("b") / "bank"
    w = BankWriter(path, {"model": "m", "task": "t"})
    for k in keys:
        w.append(BankRecord(key=k, question=f"q {k}", samples=[RecordedTrace(text=f"a {k}", num_tokens=2)]))
    w.close()
    idx = path / "index.jsonl"
    idx.write_bytes(idx.read_bytes() + b"".join(j + b"\n" for j in junk) + tail)
    files = {f.name: f.read_bytes() for f in path.iterdir()}
    entries, damage = check(path)
    assert [e.key for e in entries if e.key in keys] == keys
    assert len(damage) == sum(1 for j in junk if j.strip())  # blank lines are no damage
    if not damage:
        assert Bank(path).keys() == keys
    assert {f.name: f.read_bytes() for f in path.iterdir()} == files


# -- through the CLI ------------------------------------------------------------------------------
def test_report_and_bench_keep_every_record(math100_bank, tmp_path, capsys):
    """`tts report` on a sweep folder and `tts bench` resuming its results file, each holding a
    record with a bare "\\r" and an undecodable line: nothing cut, nothing recomputed."""
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"backend": "replay", "bank": str(math100_bank.path)}, "tasks": [{"name": "math500"}],
        "strategies": [{"name": "self_consistency"}], "grid": {"n": [1, 2, 4]}, "seeds": [0, 1],
        "output": str(tmp_path / "out"),
    }))
    assert main(["sweep", str(f)]) == 0
    capsys.readouterr()
    res = tmp_path / "out" / "results.jsonl"
    lines = res.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 12 * 3 * 2
    assert main(["report", str(tmp_path / "out")]) == 0
    clean = capsys.readouterr().out
    lines[20] = lines[20].replace(b'{"problem_id"', b'{\r"problem_id"')
    res.write_bytes(b"\xff\xfe\x00\r\n" + b"\n".join(lines) + b"\n")
    before = res.read_bytes()
    assert main(["report", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert res.read_bytes() == before and out == clean  # the same table, from every record
    assert "skipped 1 line" in err and "line 1: not UTF-8" in err

    bench = tmp_path / "b.jsonl"
    args = ["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
            "--strategy", "self_consistency", "-n", "2", "--out", str(bench)]
    assert main(args) == 0
    lines = bench.read_bytes().split(b"\n")[:-1]
    lines[3] = lines[3].replace(b'{"problem_id"', b'{\r"problem_id"')
    bench.write_bytes(b"\x85\xff\n" + b"\n".join(lines) + b"\n")
    before = bench.read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    assert "0 new records" in capsys.readouterr().out and bench.read_bytes() == before


def test_input_files_end_lines_at_newline_only(tmp_path):
    """A data file (`--data`) and the math100 source read like the stores: a bare "\\r" between
    tokens and a U+2028 inside a string are no line ends. Before: "not valid JSON" at line 1."""
    from tasks.gsm8k import GSM8K
    from tts.bank import import_math100

    data = tmp_path / "p.jsonl"
    data.write_bytes(b'{"question":\r"What is 2 + 2?", "answer": "4"}\n{"question": "x\xe2\x80\xa8y", "answer": "1"}\n')
    assert [p.question for p in GSM8K().load(data)] == ["What is 2 + 2?", "x\u2028y"]
    row = {"idx": 0, "question": "q\u2028", "answer": "1", "response": ["\\boxed{1}"], "pred": ["1"], "score": [True],
           "pred_score": [[0.5]]}
    src = tmp_path / "m.jsonl"
    src.write_bytes(json.dumps(row, ensure_ascii=False).replace(", ", ",\r", 1).encode() + b"\n")
    assert import_math100(src, tmp_path / "bank", tokenizer=None).keys() == ["math100/0"]
