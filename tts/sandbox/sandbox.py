"""Running untrusted programs (a model's code) in a sandbox, many at once, without blocking the
event loop.

Each run gets, with bubblewrap (`bwrap`):
- new network, pid, ipc, uts (and cgroup) namespaces: no network at all (not even loopback to
  the host's servers); when the program ends, or the host kills the sandbox, the sandbox's
  pid 1 exits and the kernel kills every process left in it (daemons included);
- a filesystem of its own: read-only /usr, /bin, /lib* and the Python install, fresh /proc and
  /dev, and two size-capped tmpfs folders, /work (its working folder, holding its files) and
  /tmp, both gone after the run. Nothing else of the host is visible (not $HOME, not /root,
  not the host's /tmp);
- resource limits set by the launcher (`launcher.py`) on the program only: CPU seconds,
  address space, file size, open files and processes; when the host runs as root the program
  runs as a uid of its own (root is exempt from the process limit), with every capability gone;
- a wall-time limit and output caps enforced by the host: past either, the sandbox is killed.

Without bwrap, `Sandbox` refuses to run anything (one TTSError line saying how to install it)
unless the caller opts in with `unsafe_exec=True` (or TTS_UNSAFE_EXEC=1); then programs run
with the same resource limits in a throwaway folder, in a new network namespace when `unshare`
can make one, and one stderr line says what is not isolated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tts.errors import TTSError

LAUNCHER = Path(__file__).with_name("launcher.py")
MAIN = "main.py"  # the program's file in its working folder
WORKDIR = "/work"
UNSAFE_ENV = "TTS_UNSAFE_EXEC"  # =1: the explicit opt-in to run without bubblewrap
KILL_GRACE_SECONDS = 5.0  # after a kill, how long the sandbox's pipes may take to close
UID_BASE = 1_000_000  # root host: each sandbox slot runs its program as UID_BASE + offset + slot


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use. Memory is address space (RLIMIT_AS), so it also bounds what a
    program can map; processes count the program's own processes and threads."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    processes: int = 16
    output_bytes: int = 1 << 20  # per stream (stdout, stderr); past it the program is killed
    disk_bytes: int = 64 << 20  # each of /work and /tmp; also the largest file (RLIMIT_FSIZE)
    open_files: int = 256

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "processes", "output_bytes", "disk_bytes",
                     "open_files"):
            if getattr(self, name) <= 0:
                raise TTSError(f"sandbox limit {name} must be > 0, got {getattr(self, name)}")


@dataclass(slots=True)
class ExecResult:
    """How one run ended. `exit_code` is the program's exit status (negative: killed by that
    signal; None: it never reported one, because the host killed the sandbox for its wall time
    or its output). `timed_out` covers the wall-time and the CPU-time limits; `memory_exceeded`
    is a program that died of a failed allocation (MemoryError); `output_exceeded` one killed
    for writing past the output cap (its streams are cut at the cap)."""

    exit_code: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    cpu_seconds: float | None = None  # None when the program was killed before reporting
    timed_out: bool = False
    memory_exceeded: bool = False
    output_exceeded: bool = False

    @property
    def ok(self) -> bool:
        """Exited 0 within every limit."""
        return self.exit_code == 0 and not (self.timed_out or self.output_exceeded)

    @property
    def signal(self) -> int | None:
        return -self.exit_code if self.exit_code is not None and self.exit_code < 0 else None

    def summary(self) -> str:
        """One line: how it ended."""
        if self.timed_out:
            return f"timed out ({'CPU' if self.signal in (signal.SIGXCPU, signal.SIGKILL) else 'wall'} time limit)"
        if self.output_exceeded:
            return "killed for writing past the output cap"
        if self.memory_exceeded:
            return "ran out of memory (MemoryError)"
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exit status {self.exit_code}"


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): a fault, so a resume retries the problem."""


class Sandbox:
    """Runs programs under `limits`, at most `workers` at a time (default: the CPU count).

        sandbox = Sandbox()
        result = await sandbox.run("print(input())", stdin="hi")
        assert result.ok and result.stdout == "hi\\n"

    Safe to share: each run is its own sandbox. `unsafe_exec` (or TTS_UNSAFE_EXEC=1) allows
    running without bubblewrap, with resource limits only (see the module docstring)."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None, *,
                 unsafe_exec: bool | None = None, bwrap: str | None = "") -> None:
        self.limits = limits or Limits()
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise TTSError(f"sandbox workers must be >= 1, got {workers}")
        self.bwrap = shutil.which("bwrap") if bwrap == "" else bwrap  # None: as if not installed
        if unsafe_exec is None:
            unsafe_exec = os.environ.get(UNSAFE_ENV, "") == "1"
        self.root = os.geteuid() == 0
        # The interpreter that runs programs: the base install (not the venv): the standard library only.
        self.python = os.path.realpath(sys.executable)
        self.prefix = os.path.realpath(sys.base_prefix)
        self._uid_base = UID_BASE + secrets.randbelow(1 << 20) * 256 if self.root else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: asyncio.Queue[int] | None = None
        self.isolation_gaps: list[str] = []  # what is not isolated (unsafe mode only)
        self._unshare: list[str] = []
        if self.bwrap is None:
            if not unsafe_exec:
                raise TTSError("running model-written programs needs bubblewrap (bwrap) for isolation, and it is not "
                               "installed: install it (Debian/Ubuntu: apt-get install bubblewrap; or `make install` as "
                               f"root), or opt in to running them without isolation: {UNSAFE_ENV}=1")
            self._unsafe_setup()
        else:
            self._probe()

    @property
    def unsafe(self) -> bool:
        return self.bwrap is None

    def _unsafe_setup(self) -> None:
        unshare = shutil.which("unshare")
        cmd = [unshare, "-n"] if self.root else [unshare, "-r", "-n"]  # a user namespace lets a user do it
        if unshare and subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0:
            self._unshare = [*cmd, "--"]
        else:
            self.isolation_gaps.append("network")
        self.isolation_gaps += ["filesystem (the program reads and writes whatever this user can)",
                                "processes (a daemon that leaves the process group outlives the run)"]
        if self.root:
            self.isolation_gaps.append("process count (root is exempt from RLIMIT_NPROC)")
        print(f"warning: {UNSAFE_ENV}=1: running programs WITHOUT bubblewrap; only time, CPU, memory and output are "
              f"limited; not isolated: {'; '.join(self.isolation_gaps)}", file=sys.stderr)

    # -- the pool ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[int]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # queues belong to one loop; a sandbox may outlive one (run_sync, tests)
            self._loop, self._free = loop, asyncio.Queue()
            for i in range(self.workers):
                self._free.put_nowait(i)
        free = self._free
        assert free is not None
        slot = await free.get()
        try:
            yield slot
        finally:
            free.put_nowait(slot)

    async def run(self, source: str, *, stdin: str | bytes = "", argv: Sequence[str] = (),
                  files: Mapping[str, str | bytes] | None = None, limits: Limits | None = None) -> ExecResult:
        """Run the Python program `source` (as main.py in its working folder, with `files` beside
        it) with `stdin` and `argv`; waits for a free worker first."""
        files = {MAIN: source, **(files or {})}
        for name in files:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"sandbox file names are plain names in the working folder, got {name!r}")
        limits = limits or self.limits
        async with self._slot() as slot:
            return await self._execute(files, stdin, list(argv), limits, slot)

    def _probe(self) -> None:
        """Can bwrap make its namespaces here? (A container without them would fail every run.)
        Once, when the sandbox is made: a code task fails before any engine starts."""
        proc = subprocess.run([*self._bwrap_argv(self.limits, []), "--", self.python, "-S", "-c", "pass"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if proc.returncode != 0:
            line = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise TTSError(f"bubblewrap cannot create its sandbox on this machine ({line[0]}); run where user "
                           f"namespaces are allowed, or opt in to running without isolation: {UNSAFE_ENV}=1")

    # -- one run -------------------------------------------------------------------------------
    def _bwrap_argv(self, limits: Limits, file_fds: list[tuple[int, str]]) -> list[str]:
        assert self.bwrap is not None
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
                "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
                "--setenv", "LANG", "C.UTF-8", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        if not (self.prefix + "/").startswith("/usr/"):
            # bwrap would create the folders above it (e.g. /root) as 0700: the program's uid could not pass
            for parent in reversed(Path(self.prefix).parents[:-1]):
                argv += ["--perms", "0755", "--dir", str(parent)]
            argv += ["--ro-bind", self.prefix, self.prefix]
        argv += ["--ro-bind", str(LAUNCHER), "/sandbox/launcher.py", "--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp",
                 "--perms", "0777", "--size", str(limits.disk_bytes), "--tmpfs", WORKDIR]
        for fd, name in file_fds:
            argv += ["--perms", "0644", "--file", str(fd), f"{WORKDIR}/{name}"]
        argv += ["--chdir", WORKDIR]
        if self.root:  # the launcher keeps only what it needs to drop to the slot's uid
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return argv

    def _launcher_config(self, limits: Limits, argv: list[str], slot: int, status_fd: int) -> str:
        rlimits = {
            "RLIMIT_CPU": [limits.cpu_seconds, limits.cpu_seconds + 1],  # SIGXCPU, then SIGKILL a second later
            "RLIMIT_AS": [limits.memory_bytes] * 2,
            "RLIMIT_FSIZE": [limits.disk_bytes] * 2,
            "RLIMIT_NOFILE": [limits.open_files] * 2,
            "RLIMIT_CORE": [0, 0],
        }
        uid = None
        if not self.unsafe:
            # As root, the program gets a uid no other process has; as a user, bwrap's user namespace
            # counts the sandbox's processes only, bwrap's init and the launcher among them.
            uid = self._uid_base + slot if self._uid_base is not None else None
            rlimits["RLIMIT_NPROC"] = [limits.processes + (0 if uid is not None else 2)] * 2
        # else: a user's process count is system-wide, and root is exempt: no process limit (said at start)
        return json.dumps({"argv": argv, "rlimits": rlimits, "uid": uid, "status_fd": status_fd})

    async def _execute(self, files: Mapping[str, str | bytes], stdin: str | bytes, args: list[str], limits: Limits,
                       slot: int) -> ExecResult:
        status_r, status_w = os.pipe()
        keep: list[int] = []  # fds the child inherits (closed here once it started)
        workdir = None
        try:
            program = [self.python, "-E", "-s", "-B", "-X", "utf8", MAIN, *args]
            if self.unsafe:
                workdir = tempfile.mkdtemp(prefix="tts-sandbox-")
                for name, text in files.items():
                    Path(workdir, name).write_bytes(text.encode() if isinstance(text, str) else text)
                cmd = [*self._unshare, self.python, "-S", "-E", str(LAUNCHER)]
                env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"}
            else:
                fds = []
                for name, text in files.items():
                    fd = os.memfd_create(name)
                    keep.append(fd)
                    with open(fd, "wb", closefd=False) as f:
                        f.write(text.encode() if isinstance(text, str) else text)
                    os.lseek(fd, 0, os.SEEK_SET)
                    fds.append((fd, name))
                cmd = [*self._bwrap_argv(limits, fds), "--", self.python, "-S", "-E", "/sandbox/launcher.py"]
                env = None
            cmd.append(self._launcher_config(limits, program, slot, status_w))
            keep.append(status_w)
            start = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                pass_fds=keep, start_new_session=True, cwd=workdir, env=env)
        except BaseException:
            os.close(status_r)
            _close_all(keep)
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        _close_all(keep)
        try:
            return await self._watch(proc, stdin, limits, start, status_r)
        finally:
            os.close(status_r)
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _watch(self, proc: asyncio.subprocess.Process, stdin: str | bytes, limits: Limits, start: float,
                     status_r: int) -> ExecResult:
        out, err = bytearray(), bytearray()
        over = False

        async def pump(stream: asyncio.StreamReader, buf: bytearray) -> None:
            nonlocal over
            while chunk := await stream.read(1 << 16):
                room = limits.output_bytes - len(buf)
                buf += chunk[:max(room, 0)]
                if len(chunk) > room and not over:
                    over = True
                    _kill(proc)

        async def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
                await proc.stdin.drain()
                proc.stdin.close()

        assert proc.stdout is not None and proc.stderr is not None
        io = asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err), feed())
        timed_out = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), limits.wall_seconds)
            except TimeoutError:
                timed_out = True
        finally:
            if proc.returncode is None:  # timed out, or this run was cancelled
                _kill(proc)
                await proc.wait()
            wall = time.monotonic() - start
            try:  # the sandbox is gone, so its pipes close now (unsafe mode: a daemon may hold them)
                await asyncio.wait_for(io, KILL_GRACE_SECONDS)
            except TimeoutError:
                pass
        report = _read_report(status_r)
        code = report.get("exit") if report else None
        if report is None and proc.returncode not in (0, -signal.SIGKILL) and not (timed_out or over):
            raise SandboxError(f"the sandbox failed to start the program (status {proc.returncode}): "
                               f"{err.decode(errors='replace').strip()[-500:]}")
        stderr = err.decode(errors="replace")
        return ExecResult(
            exit_code=code, stdout=out.decode(errors="replace"), stderr=stderr, wall_seconds=wall,
            cpu_seconds=report.get("cpu") if report else None,
            timed_out=timed_out or _cpu_killed(code, report, limits),
            memory_exceeded="MemoryError" in stderr[-4096:] or "Cannot allocate memory" in stderr[-4096:],
            output_exceeded=over)


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the run's process group: bwrap, whose death kills the sandbox's pid 1 (--die-with-
    parent) and with it every process in the sandbox's pid namespace."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _cpu_killed(code: int | None, report: dict | None, limits: Limits) -> bool:
    """Killed by RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one (a SIGKILL below
    the limit is something else, e.g. the kernel's OOM killer)."""
    return code == -signal.SIGXCPU or (code == -signal.SIGKILL and report is not None
                                       and report.get("cpu", 0) >= limits.cpu_seconds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_report(fd: int) -> dict | None:
    """The launcher's JSON report (written once, at the end; empty when it was killed)."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    try:
        return json.loads(data) if data else None
    except json.JSONDecodeError:
        return None


_default: Sandbox | None = None


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (default limits, one worker per CPU), made on first use: a
    TTSError then when bubblewrap is missing and TTS_UNSAFE_EXEC=1 is not set."""
    global _default
    if _default is None:
        _default = Sandbox()
    return _default
