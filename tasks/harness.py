"""The test harness of code tasks: runs INSIDE the sandbox, as its main.py, never in the host.

It loads solution.py (the model's program, with `__name__` set to "solution" so its
`if __name__ == "__main__":` block stays quiet), runs spec.json's setup, then each hidden test in
turn, and reports one line per test, `<tag>{json}`, on a copy of stdout taken before the solution
ran (a solution that replaces sys.stdout cannot hide them). The tag is random per run; a line
`<tag>{"done": true}` closes a run that got through every test. spec.json (the tag and the tests)
is deleted before the solution runs. Standard library only.

Optional spec fields, for execution verifiers and repair loops: `test_seconds`, a time limit per
test (a test past it fails with TimeoutError and the next one runs); `exprs`, expressions whose
values are reported (`<tag>{"expr": i, "value": repr}`, or `"error"`: what a program's behaviour
on an input is). A failed `assert A == B` reports `got`, the repr of A, as a repair loop shows it.
"""

import ast
import json
import os
import signal
import sys
import traceback

REPR_CHARS = 300  # of a value reported back


class TestTimeout(BaseException):  # not an Exception: a program's `except Exception` cannot swallow it
    pass


def _alarm(signum, frame):
    raise TestTimeout("the test ran past its time limit")


def limited(seconds, run):
    """run() under a wall-clock limit of `seconds` (None: none)."""
    if not seconds:
        return run()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def shown(value) -> str:
    try:
        text = repr(value)
    except BaseException as e:  # noqa: BLE001  (a broken __repr__ is the program's output too)
        text = f"<unprintable {type(e).__name__}>"
    return text[:REPR_CHARS]


def actual(test: str, namespace: dict, seconds):
    """For a failed single `assert A == B`: A's value as shown, or what evaluating it raised."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    cond = tree.body[0].test
    if not (isinstance(cond, ast.Compare) and len(cond.ops) == 1 and isinstance(cond.ops[0], ast.Eq)):
        return None
    code = compile(ast.Expression(cond.left), "got", "eval")
    try:
        return shown(limited(seconds, lambda: eval(code, namespace)))  # noqa: S307  (inside the sandbox)
    except BaseException as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"[:REPR_CHARS]


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

    seconds = spec.get("test_seconds")
    if seconds:
        signal.signal(signal.SIGALRM, _alarm)
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
            code = compile(test, name, "exec")
            limited(seconds, lambda: exec(code, namespace))  # noqa: S102
        except BaseException as e:  # noqa: BLE001
            failed = describe(e, name, test)
            if isinstance(e, AssertionError):
                got = actual(test, namespace, seconds)
                if got is not None:
                    failed["got"] = got
            report(test=i, passed=False, **failed)
        else:
            report(test=i, passed=True)
    for i, expr in enumerate(spec.get("exprs", ())):
        try:
            code = compile(expr, f"expr_{i}", "eval")
            report(expr=i, value=shown(limited(seconds, lambda: eval(code, namespace))))  # noqa: S307
        except BaseException as e:  # noqa: BLE001
            report(expr=i, error=type(e).__name__)
    report(done=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
