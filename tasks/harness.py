"""The test harness of code tasks: runs INSIDE the sandbox, as its main.py, never in the host.

It loads solution.py (the model's program, with `__name__` set to "solution" so its
`if __name__ == "__main__":` block stays quiet), runs spec.json's setup, then each hidden test in
turn, and reports one line per test, `<tag>{json}`, on a copy of stdout taken before the solution
ran (a solution that replaces sys.stdout cannot hide them). The tag is random per run; a line
`<tag>{"done": true}` closes a run that got through every test. spec.json (the tag and the tests)
is deleted before the solution runs. Standard library only.
"""

import json
import os
import sys
import traceback


def describe(error: BaseException, name: str, source: str) -> dict:
    """What failed, where: the exception, the line of `name` (the test or the setup) that was
    running, and the deepest frame (often in solution.py)."""
    out = {"error": f"{type(error).__name__}: {error}"[:400].rstrip(": ")}
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f.filename == name]
    if isinstance(error, SyntaxError) and error.filename in (name, "solution.py"):
        out["where"] = f"{error.filename}:{error.lineno}"
    elif frames:
        out["where"] = f"{frames[-1].filename}:{frames[-1].lineno}"
    if ours and ours[-1].lineno:  # the whole statement: an assert may span lines
        frame = ours[-1]
        lines = source.splitlines()[frame.lineno - 1:(frame.end_lineno or frame.lineno)]
        if lines:
            out["line"] = " ".join(line.strip() for line in lines)[:400]
    return out


def main() -> None:
    with open("spec.json", encoding="utf-8") as f:
        spec = json.load(f)
    os.remove("spec.json")  # the solution must not read the report's tag (nor the hidden tests)
    fd = os.dup(1)
    tag = spec["tag"]

    def report(**fields: object) -> None:
        os.write(fd, ("\n" + tag + json.dumps(fields) + "\n").encode())

    namespace = {"__name__": "solution"}
    with open("solution.py", encoding="utf-8") as f:
        solution = f.read()
    for name, source in (("solution.py", solution), ("setup", spec.get("setup", ""))):
        try:
            exec(compile(source, name, "exec"), namespace)  # noqa: S102  (inside the sandbox)
        except BaseException as e:  # noqa: BLE001  (SystemExit too: a solution may call exit())
            report(load=name, **describe(e, name, source))
            return
    for i, test in enumerate(spec["tests"]):
        name = f"test_{i}"
        try:
            exec(compile(test, name, "exec"), namespace)  # noqa: S102
        except BaseException as e:  # noqa: BLE001
            report(test=i, passed=False, **describe(e, name, test))
        else:
            report(test=i, passed=True)
    report(done=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
