"""Drop a bank's damaged entries, keeping every intact record: `python -m tts.bank.repair BANK`.

The old index is kept beside the new one (index.jsonl.damaged); records.bin is left as it is
(intact records keep their offsets; the next `BankWriter` cuts any bytes past the last one).
The dropped problems can then be recorded again into the same bank (`tts record` resumes).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tts.bank.format import INDEX, _read_manifest
from tts.bank.reader import Damage, check
from tts.errors import TTSError
from tts.jsonl import OutputLock, complete_lines


def drop_damaged(path: str | Path) -> list[Damage]:
    """Rewrite the index of the bank at `path` without its damaged lines; returns what was dropped."""
    path = Path(path).expanduser()
    _read_manifest(path)  # a bank at all
    entries, damage = check(path)
    if not damage:
        return []
    idx = path / INDEX
    lock = OutputLock(idx).acquire()  # a writer: not while `tts record` appends to this bank
    try:
        raw = idx.read_bytes()
        lines, good = complete_lines(raw)  # lines end at "\n" only, as the reader's do
        lines.append((len(lines) + 1, raw[good:]))  # the tail: kept (ended) if it is a whole entry
        keep = {e.line for e in entries}
        shutil.copy2(idx, idx.with_name(INDEX + ".damaged"))
        tmp = idx.with_name(INDEX + ".tmp")
        with open(tmp, "wb") as f:
            f.writelines(line + b"\n" for n, line in lines if n in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, idx)
    finally:
        lock.release()
    return damage


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tts.bank.repair BANK_FOLDER", file=sys.stderr)
        return 2
    try:
        dropped = drop_damaged(args[0])
    except TTSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for d in dropped:
        print(f"dropped {d}")
    print(f"{args[0]}: {'no damage found' if not dropped else f'{len(dropped)} damaged entries dropped; old index in {INDEX}.damaged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
