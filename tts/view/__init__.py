"""`tts view RESULTS`: a run as a static site, to look inside it in a browser.

RESULTS is a results file of `tts bench` or a sweep folder. The site (default: `view/` in the
sweep folder, `X.view/` beside a file `X.jsonl`) works from file://, offline: plain HTML, CSS
and JavaScript written for it (assets/), data in small script files loaded per page
(`tts.view.site`). Pages: the overview (the report's table, filterable by task / strategy / n,
accuracy against cost, cost-of-pass), the problem list (right / wrong per configuration and
seed), the paired comparison of two configurations (`tts report --compare` in the browser, with
the problems where they disagree), and each problem with one run or two side by side: the
question, gold answer, vote tally, usage, every trace (thinking and answer parts, finish
reason, tokens, where and why a strategy stopped it), and the strategy's own picture from its
telemetry (search tree, DeepConf confidence, DeepPrune clusters, particle weights, budget
forcing's Waits). Traces and trees come from the run's details file
(`tts.experiment.details`); runs recorded before details were kept show answers and scores.

Model and problem text is untrusted: the pages only ever set it as text (never as markup),
and their Content-Security-Policy allows no script but the site's own files.
`--serve` serves the folder on 127.0.0.1 (never another interface).
"""

from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path

from tts.errors import TTSError
from tts.view.site import build

__all__ = ["add_arguments", "build", "main", "serve"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="a results .jsonl file (tts bench) or a sweep folder (tts sweep)")
    p.add_argument("--out", help="the site's folder (default: view/ in a sweep folder, X.view/ beside X.jsonl)")
    p.add_argument("--serve", action="store_true", help="then serve it on http://127.0.0.1:PORT until Ctrl-C")
    p.add_argument("--port", type=int, default=8765, help="--serve: the port (default 8765)")


def main(args: argparse.Namespace) -> int:
    index = build(args.results, args.out)
    print(f"wrote {index.parent}/ — open {index.resolve().as_uri()}")
    if args.serve:
        serve(index.parent, args.port)
    return 0


def serve(folder: str | Path, port: int = 8765) -> None:
    """Serve `folder` on 127.0.0.1:`port` until interrupted."""
    handler = functools.partial(_Quiet, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise TTSError(f"cannot serve on 127.0.0.1:{port} ({e.strerror}); pick another --port") from None
    print(f"serving http://127.0.0.1:{server.server_port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass
