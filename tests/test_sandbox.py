"""The sandbox against hostile programs: each is contained, each run ends as a failed result, and
the host is checked to be unaffected (its files, its servers, its process table)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest

from tts.errors import TTSError
from tts.sandbox import Limits, Sandbox

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap not installed (make install installs it on Debian)")


def procs_with(marker: str) -> list[int]:
    """Host pids with `marker` as one of their arguments: a sandboxed program given it in its argv
    and its forks (not bwrap and the launcher, whose configuration merely contains it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path("/proc", entry, "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry))
            except OSError:  # gone meanwhile
                pass
    return found


def marker() -> str:
    return f"tts-sandbox-test-{secrets.token_hex(6)}"


@pytest.fixture
def sandbox() -> Sandbox:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed (make install installs it on Debian)")
    return Sandbox(Limits(wall_seconds=5, cpu_seconds=3, memory_bytes=512 << 20, output_bytes=1 << 16), workers=2)


# -- a normal program ----------------------------------------------------------------------------
async def test_a_normal_program_gets_its_stdin_argv_and_files(sandbox):
    src = "import sys\nprint(input().upper(), sys.argv[1:], open('data.txt').read())\n"
    r = await sandbox.run(src, stdin="hello\n", argv=["a", "b"], files={"data.txt": "42"})
    assert r.ok, r
    assert r.stdout == "HELLO ['a', 'b'] 42\n"
    assert r.exit_code == 0 and not r.timed_out and r.cpu_seconds is not None and r.wall_seconds < 5


async def test_a_failing_program_reports_its_status_and_traceback(sandbox):
    r = await sandbox.run("import sys\nprint('partial')\nsys.exit(3)")
    assert r.exit_code == 3 and not r.ok and r.stdout == "partial\n"
    r = await sandbox.run("raise ValueError('boom')")
    assert r.exit_code == 1 and "ValueError: boom" in r.stderr


async def test_the_program_sees_only_its_view_of_the_filesystem(sandbox):
    src = "import json, os\nprint(json.dumps([os.listdir('/'), os.getcwd(), os.listdir('.'), os.environ['HOME']]))"
    r = await sandbox.run(src)
    assert r.ok, r
    top, cwd, here, home = json.loads(r.stdout)
    assert "home" not in top and "etc" not in top and "work" in top
    assert (cwd, here, home) == ("/work", ["main.py"], "/work")


# -- hostile programs ----------------------------------------------------------------------------
async def test_an_infinite_loop_is_stopped_by_the_cpu_limit(sandbox):
    start = time.monotonic()
    r = await sandbox.run("while True:\n    pass\n")
    assert r.timed_out and not r.ok
    assert r.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert time.monotonic() - start < 10


async def test_a_sleeper_is_killed_at_the_wall_limit_with_nothing_left(sandbox):
    m = marker()
    r = await sandbox.run("import time\nprint('started', flush=True)\ntime.sleep(600)",
                          argv=[m], limits=Limits(wall_seconds=1))
    assert r.timed_out and r.exit_code is None and r.stdout == "started\n"
    assert 1 <= r.wall_seconds < 1 + 5
    assert procs_with(m) == []


async def test_a_fork_bomb_is_capped_and_the_host_keeps_forking(sandbox):
    m = marker()
    bomb = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    run = asyncio.create_task(sandbox.run(bomb, argv=[m], limits=Limits(wall_seconds=3, processes=16)))
    await asyncio.sleep(1.5)
    inside = len(procs_with(m))
    host = await asyncio.create_subprocess_exec("true")  # the host can still start processes
    assert await host.wait() == 0
    r = await run
    assert r.timed_out and not r.ok
    assert 0 < inside <= 16  # the cap held
    await asyncio.sleep(0.2)
    assert procs_with(m) == []


async def test_a_memory_hog_fails_at_the_memory_limit(sandbox):
    hog = ("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
           "    print(len(chunks), flush=True)\n")
    r = await sandbox.run(hog)
    assert r.memory_exceeded and not r.ok and r.exit_code == 1
    got = int(r.stdout.split()[-1]) * (16 << 20)
    assert got <= 512 << 20  # it never held more than its limit


@pytest.mark.parametrize("where", ["host_tmp", "home", "usr", "python", "root"])
async def test_writing_outside_the_work_folder_fails_and_leaves_the_host_untouched(sandbox, tmp_path, where):
    import sys

    name = f"escaped-{secrets.token_hex(4)}"
    target = {"host_tmp": tmp_path / name, "home": Path.home() / name, "usr": Path("/usr") / name,
              "python": Path(sys.base_prefix) / name, "root": Path("/") / name}[where]
    try:
        r = await sandbox.run(f"open({str(target)!r}, 'w').write('pwned')")
        assert r.exit_code == 1 and not r.ok
        assert "Error" in r.stderr  # PermissionError / FileNotFoundError / read-only file system
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


async def test_writing_inside_the_sandbox_stays_inside(sandbox):
    r = await sandbox.run("open('out.txt', 'w').write('x')\nopen('/tmp/t.txt', 'w').write('y')\nprint('ok')")
    assert r.ok and r.stdout == "ok\n"
    r = await sandbox.run("import os\nprint(os.listdir('.'), os.listdir('/tmp'))")  # a fresh folder each run
    assert r.stdout == "['main.py'] []\n"


async def test_the_disk_cap_stops_a_program_filling_its_folder(sandbox):
    r = await sandbox.run("with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n",
                          limits=Limits(disk_bytes=8 << 20))
    assert not r.ok and ("No space left" in r.stderr or r.signal == signal.SIGXFSZ), r


@pytest.mark.parametrize("where", ["host_tmp", "home"])
async def test_reading_a_secret_outside_fails(sandbox, tmp_path, where):
    secret = f"secret-{secrets.token_hex(8)}"
    path = (tmp_path if where == "host_tmp" else Path.home()) / f"tts-secret-{secrets.token_hex(4)}"
    path.write_text(secret)
    path.chmod(0o644)  # readable by anyone on the host: only the sandbox's view can stop it
    try:
        r = await sandbox.run(f"print(open({str(path)!r}).read())")
        assert r.exit_code == 1 and not r.ok
        assert secret not in r.stdout + r.stderr
        assert "FileNotFoundError" in r.stderr
    finally:
        path.unlink()


async def test_a_socket_to_a_host_server_on_loopback_fails(sandbox):
    seen = []

    async def handle(reader, writer):
        seen.append(True)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)  # the server is up: the host reaches it
        w.close()
        await asyncio.sleep(0.05)
        assert seen == [True]
        src = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        r = await sandbox.run(src)
        assert r.exit_code == 1 and "connected" not in r.stdout
        assert "OSError" in r.stderr or "ConnectionRefusedError" in r.stderr or "unreachable" in r.stderr
        await asyncio.sleep(0.05)
        assert seen == [True]  # nothing from the sandbox arrived
    finally:
        server.close()
        await server.wait_closed()


async def test_printing_a_gigabyte_is_cut_at_the_cap_and_killed(sandbox):
    start = time.monotonic()
    r = await sandbox.run("import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * (1 << 20))\n")
    assert r.output_exceeded and not r.ok and r.exit_code is None
    assert len(r.stdout) == 1 << 16
    assert time.monotonic() - start < 5  # killed at the cap, not after writing it all


async def test_a_daemon_that_outlives_the_program_is_killed_with_the_sandbox(sandbox):
    m = marker()
    src = ("import subprocess, sys\n"
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]],\n"
           "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
           "print('spawned', flush=True)\nsys.exit(1)\n")
    r = await sandbox.run(src, argv=[m])
    assert r.stdout == "spawned\n" and r.exit_code == 1 and not r.timed_out
    await asyncio.sleep(0.3)
    assert procs_with(m) == []


async def test_a_cancelled_run_leaves_no_process(sandbox):
    m = marker()
    run = asyncio.create_task(sandbox.run("import time\ntime.sleep(60)", argv=[m]))
    for _ in range(50):  # until it is running
        await asyncio.sleep(0.05)
        if procs_with(m):
            break
    assert procs_with(m)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.2)
    assert procs_with(m) == []


# -- the pool -------------------------------------------------------------------------------------
async def test_runs_share_a_bounded_pool_without_blocking_the_event_loop(sandbox):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    t = asyncio.create_task(ticker())
    start = time.monotonic()
    results = await asyncio.gather(*(sandbox.run(f"import time\ntime.sleep(0.5)\nprint({i})") for i in range(6)))
    wall = time.monotonic() - start
    t.cancel()
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert wall >= 1.5  # 6 runs of 0.5 s on 2 workers: three rounds
    assert ticks >= wall / 0.02 / 3  # the loop kept running meanwhile


# -- without bubblewrap ---------------------------------------------------------------------------
def test_without_bwrap_it_refuses_in_one_line_unless_opted_in(monkeypatch):
    monkeypatch.delenv("TTS_UNSAFE_EXEC", raising=False)
    with pytest.raises(TTSError) as e:
        Sandbox(bwrap=None)
    assert "\n" not in str(e.value) and "bubblewrap" in str(e.value) and "TTS_UNSAFE_EXEC=1" in str(e.value)


async def test_unsafe_mode_runs_with_limits_and_says_what_is_not_isolated(capsys):
    sb = Sandbox(Limits(wall_seconds=1), bwrap=None, unsafe_exec=True)
    assert "not isolated" in capsys.readouterr().err
    assert "filesystem" in " ".join(sb.isolation_gaps)
    r = await sb.run("print(input())", stdin="hi")
    assert r.ok and r.stdout == "hi\n"
    m = marker()
    r = await sb.run("import time\ntime.sleep(60)", argv=[m])
    assert r.timed_out and procs_with(m) == []


async def test_unsafe_mode_does_not_contain_a_daemon_which_the_process_scan_sees(capsys):
    """The control of the daemon test above: without the pid namespace a daemon that leaves the
    process group survives the run (documented), and procs_with finds it."""
    sb = Sandbox(bwrap=None, unsafe_exec=True)
    m = marker()
    src = ("import subprocess, sys\n"
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]],\n"
           "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    r = await sb.run(src, argv=[m])
    assert r.ok
    survivors = procs_with(m)
    try:
        assert survivors
    finally:
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)


def test_a_bwrap_that_cannot_make_namespaces_fails_at_construction(tmp_path):
    """A FAKE bwrap (a script failing as bwrap does in a container without user namespaces):
    the real one cannot be made to fail on demand here."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the kernel "
                    "does not allow non-privileged user namespaces.' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(TTSError) as e:
        Sandbox(bwrap=str(fake))
    assert "\n" not in str(e.value) and "No permissions to creating new namespace" in str(e.value)
