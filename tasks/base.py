"""What every benchmark shares: loading problems (local JSONL or the dataset hub), pulling the
answer out of model text, and grading it against the gold answer with math-verify."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tts.answers import mathverify
from tts.answers import extract_boxed
from tts.errors import TTSError
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem

QUESTION_FIELDS = ("question", "problem")  # local files and hubs use either name
ID_FIELDS = ("idx", "unique_id", "id")


class Task:
    """A benchmark. Subclasses set the names below and override `gold`/`extract` where needed."""

    name: str = ""
    hub_id: str = ""
    hub_split: str = "test"
    hub_config: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    def load(self, path: str | Path | None = None, limit: int | None = None) -> list[Problem]:
        """The task's problems, from a local JSONL file when `path` is given, else from the hub.

        Ids are stable across runs: `name/<idx|unique_id|id>` when the row has one, else
        `name/<row number>` (0-based, in file order), so results can be resumed and joined.
        """
        if limit is not None and limit < 0:
            raise TTSError(f"limit must be >= 0, got {limit}")
        if path is not None:
            rows = read_jsonl(Path(path))
            where = str(path)
        else:
            rows = enumerate(self.default_rows(), start=1)
            where = self.default_source()
        problems: list[Problem] = []
        for i, (line, row) in enumerate(itertools.islice(rows, limit)):  # stop reading at limit
            where_row = f"{where}, {'line' if path else 'row'} {line}"
            if not isinstance(row, dict):
                raise TTSError(f"{where_row}: expected a JSON object, got {type(row).__name__}")
            problems.append(self.to_problem(i, row, where_row))
        if not problems and limit != 0:  # an empty file would run nothing and say so with exit 0
            raise TTSError(f"{where} holds no problems (no JSON object on any line); pass a data file with "
                           f"the task's rows, one JSON object per line")
        return problems

    def default_rows(self) -> Iterable[dict[str, Any]]:
        """The rows loaded without a local file: the dataset hub's (a task may ship its own)."""
        return self._hub_rows()

    def default_source(self) -> str:
        """Where `default_rows` come from, as error messages name it."""
        return f"{self.hub_id} ({self.hub_split} split)"

    def to_problem(self, i: int, row: dict[str, Any], where: str) -> Problem:
        """The Problem of the `i`-th row (0-based) read at `where`; a bad row is a TTSError naming it."""
        qkey = next((k for k in QUESTION_FIELDS if isinstance(row.get(k), str)), None)
        if qkey is None or row.get("answer") is None:
            raise TTSError(f"{where}: a row needs a 'question' (or 'problem') and an 'answer' field; "
                           f"this one has {sorted(row)}")
        try:
            gold = self.gold(row)
        except ValueError as e:
            raise TTSError(f"{where}: {e}") from None
        rid = next((row[k] for k in ID_FIELDS if row.get(k) not in (None, "")), i)
        meta = {k: v for k, v in row.items() if k not in (*QUESTION_FIELDS, "answer")}
        if str(row["answer"]) != gold:  # gsm8k: the answer field is the worked solution
            meta.setdefault("solution", row["answer"])
        return Problem(f"{self.name}/{rid}", row[qkey], gold, task=self.name, meta=meta)

    def _hub_rows(self) -> Iterable[dict[str, Any]]:
        try:
            import datasets  # optional and heavy: only needed without a local file
        except ImportError:
            raise TTSError(f"loading {self.name} from the hub needs the `datasets` package: "
                           "pip install datasets (or pip install 'ttscale[hub]'), "
                           "or pass --data FILE.jsonl") from None
        _reach_hub(self.hub_id)
        try:
            return datasets.load_dataset(self.hub_id, self.hub_config, split=self.hub_split)
        except Exception as e:  # network down, offline mode, renamed dataset...
            raise TTSError(f"could not load {self.hub_id} from the dataset hub ({type(e).__name__}: "
                           f"{e}); check the network, or pass --data FILE.jsonl") from None

    def gold(self, row: dict[str, Any]) -> str:
        """The reference answer of a row (AIME files store it as a number, so str() it)."""
        return str(row["answer"]).strip()

    def extract(self, text: str) -> str | None:
        """The answer in a model's output: the content of the last \\boxed{}."""
        return extract_boxed(text)

    async def grade(self, problem: Problem, answer: str | None) -> bool:
        """Whether `answer` matches the gold answer; no answer (or no gold) is simply wrong."""
        if answer is None or problem.answer is None:
            return False
        return await mathverify.grade(problem.answer, answer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


HUB_PROBE_SECONDS = 5.0


def _reach_hub(dataset: str) -> None:
    """Say what a hub load waits for, and fail within HUB_PROBE_SECONDS when the hub cannot be
    reached (the hub client itself retries for ~25 s before giving up). Skipped offline (the
    local cache is used) and behind a proxy (a direct probe would say nothing about it)."""
    import os
    import socket
    import sys
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001  (an older client: the public hub)
        endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    print(f"loading {dataset} from the dataset hub ({host}; pass --data FILE.jsonl to use a local file)",
          file=sys.stderr)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as e:
        raise TTSError(f"cannot reach the dataset hub at {host}:{port} to load {dataset} ({e}); check the "
                       "network, set HF_HUB_OFFLINE=1 to use the local cache, or pass --data FILE.jsonl") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) for each non-blank line; a bad line is a TTSError naming it."""
    if not path.is_file():
        raise TTSError(f"data file {path} not found; pass an existing JSONL file "
                       "(one JSON object per line) or leave it out to load from the hub")
    opener = gzip.open if path.suffix == ".gz" else open  # HumanEval ships as .jsonl.gz
    n = 0
    try:
        with opener(path, "rt", encoding="utf-8", newline="\n") as f:  # lines end at "\n" only, as tts.jsonl's
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    raise TTSError(f"{path}, line {n}: not valid JSON ({e.msg}); "
                                   "fix or remove that line") from None
    except UnicodeDecodeError:
        raise TTSError(f"{path}, line {n + 1}: not UTF-8 text; convert the file to UTF-8") from None
    except (OSError, EOFError) as e:  # unreadable, or a .gz that is not gzip
        raise TTSError(f"cannot read data file {path}: {e}") from None
