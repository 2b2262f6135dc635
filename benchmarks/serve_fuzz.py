"""A fuzz campaign against `tts serve` as a command: hypothesis-generated requests (the bodies of
tests/serve_bodies.py) to a server replaying the recorded math100 bank on 127.0.0.1, plus bodies
at and over the size limit. Prints the status counts, the 5xx count (must be 0: no client input
is a server fault) and the server's resident memory after a warm-up and at the end (it must stay
flat: nothing a request sends or leaves behind is kept).

    python benchmarks/serve_fuzz.py --requests 1200

Needs the shared data (../shared/data/math100_qwen25math_8samples_rm.jsonl); the bank is imported
into a temporary folder. Every request goes to 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT.parent / "shared" / "data" / "math100_qwen25math_8samples_rm.jsonl"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    import serve_bodies
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st
    from servers import free_port

    from tts.bank import import_math100

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=3, help="the requests in this many rounds, RSS after each")
    ap.add_argument("--seconds", type=float, default=600, help="stop the campaign after this long")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"error: {DATA} not found", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="serve-fuzz-"))
    bank = import_math100(DATA, folder / "m100", tokenizer=None, limit=20)
    questions = [p.question for p in bank.problems()]
    port = free_port()
    log = open(folder / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tts.cli", "serve", "--backend", "replay", "--bank", str(bank.path),
                             "--served-model-name", "m", "--port", str(port), "-n", "4", "--max-n", "16",
                             "--max-seconds", "30"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    fives: list[str] = []
    try:
        with httpx.Client(base_url=url, timeout=60) as h:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if h.get("/health").status_code == 200:
                        break
                assert proc.poll() is None, (folder / "serve.log").read_text()[-2000:]
                time.sleep(0.2)
            ok = {"model": "m", "messages": [{"role": "user", "content": questions[0]}]}
            for _ in range(50):  # warm-up: every code path once loaded, caches filled
                h.post("/v1/chat/completions", json=ok).raise_for_status()
            before = rss_mb(proc.pid)
            start = time.time()

            def send(path: str, content: bytes) -> None:
                try:
                    r = h.post(path, content=content, headers={"Content-Type": "application/json"})
                except httpx.TransportError:  # answered 413 and closed before an oversized body was sent
                    counts[(path, 0)] += 1
                    return
                if r.headers.get("content-type", "").startswith("text/event-stream") and '"server_error"' in r.text:
                    fives.append(f"{path} stream: {r.text[-300:]}")
                if r.status_code >= 500:
                    fives.append(f"{path} {r.status_code}: {content[:200]!r} -> {r.text[:300]}")
                counts[(path, r.status_code)] += 1

            def campaign(data: st.DataObject) -> None:
                if time.time() - start > args.seconds:
                    return
                if data.draw(st.integers(0, 9)) == 0:
                    send(data.draw(st.sampled_from(serve_bodies.ENDPOINTS)), data.draw(serve_bodies.raw()))
                else:
                    path, body = data.draw(serve_bodies.body(questions))
                    send(path, serve_bodies.encode(body))

            rounds = []
            for r in range(args.rounds):  # new requests each round (another seed): a leak grows round by round
                seed(r)(settings(max_examples=args.requests // args.rounds, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck))(given(data=st.data())(campaign)))()
                rounds.append(rss_mb(proc.pid))
            for size in (1 << 20, 4 << 20, 50 << 20):  # at, under and far over --max-body-bytes (4 MiB)
                send("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": "'
                     + b"x" * (size - 80) + b'"}]}')
            for _ in range(50):
                h.post("/v1/chat/completions", json=ok).raise_for_status()
            after = rss_mb(proc.pid)
            alive = h.post("/v1/chat/completions", json=ok).status_code
    finally:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
    total = sum(counts.values())
    print(f"requests: {total} in {time.time() - start:.0f} s (plus 101 valid ones around them)")
    for (path, status), n in sorted(counts.items()):
        print(f"  {path:22} {status or 'closed after 413'}: {n}")
    print(f"5xx (or server_error events): {len(fives)}")
    for f in fives[:10]:
        print("  " + f)
    print(f"server RSS after warm-up {before:.0f} MB; after each round "
          + ", ".join(f"{m:.0f}" for m in rounds) + f" MB; at the end {after:.0f} MB ({after - before:+.0f} MB); "
          f"still answering: {alive}")
    return 1 if fives or alive != 200 else 0


if __name__ == "__main__":
    sys.exit(main())
