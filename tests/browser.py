"""A real headless Chromium for page tests, driven over the Chrome DevTools Protocol.

`chromium()` finds Debian's `chromium` (installing it with apt where it is missing and this
runs as root, as `make browser` does), or returns None with the reason. `Browser` starts one
headless instance on a throwaway profile and drives one page: open a URL, wait for a
condition, evaluate JavaScript, move the mouse, take a screenshot; it records every script
error and console error the page reports, so a test can assert there were none.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1400,1000"]


def chromium() -> tuple[str | None, str]:
    """The chromium executable, installing it where missing (root with apt only); else None
    and why not."""
    found = shutil.which("chromium")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium is not installed and cannot be here (needs root and apt-get): apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {r.stderr.strip()[-300:]}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get install chromium did not provide a chromium command")


class Browser:
    def __init__(self, executable: str):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="tts-chromium-")
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        if url is None:
            self.close()
            raise RuntimeError("chromium did not start (no DevTools endpoint)")
        self.ws = connect(url, max_size=None, open_timeout=30)
        self._ids = itertools.count(1)
        self.errors: list[str] = []
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.send(domain)

    # -- protocol ------------------------------------------------------------------------
    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == i:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self._send(method, params, self.session)

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))

    # -- page ----------------------------------------------------------------------------
    def open(self, url: str, ready: str = "!document.getElementById('loading')", timeout: float = 20) -> float:
        """Navigate and wait until the JavaScript condition `ready` holds; the seconds it took."""
        t0 = time.perf_counter()
        self.send("Page.navigate", {"url": url})
        self.wait(ready, timeout)
        return time.perf_counter() - t0

    def wait(self, condition: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.eval(f"document.readyState === 'complete' && !!({condition})"):
                    return
            except RuntimeError:
                pass  # the page is still being replaced
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {condition!r}; errors: {self.errors}")
            time.sleep(0.02)

    def eval(self, expr: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("exception", {}).get("description", str(r["exceptionDetails"])))
        return r["result"].get("value")

    def hover(self, selector: str) -> None:
        """Move the mouse onto the centre of the first element matching `selector`."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: 'nearest', inline: 'nearest'}});
            const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mouseMoved",):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1]})

    def click(self, selector: str) -> None:
        self.hover(selector)
        box = self.eval(f"""(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def screenshot(self, path: str | Path, full: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
