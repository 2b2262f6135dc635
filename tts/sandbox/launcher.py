"""Runs inside the sandbox, before the program: sets the program's resource limits, drops to an
unprivileged uid when started as root, runs the program, and reports its exit status and CPU
time on a pipe the program cannot reach (the host reads it; the program's own output cannot
forge it).

A standalone script (started as `python -S -E launcher.py CONFIG`): standard library only,
never imported by the framework. CONFIG is JSON: {"argv": [...], "rlimits": {"RLIMIT_CPU":
[soft, hard], ...}, "uid": int | null, "status_fd": int}.
"""

import json
import os
import resource
import sys


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status_fd = cfg["status_fd"]
    pid = os.fork()
    if pid == 0:  # the program
        try:
            os.close(status_fd)
            for name, (soft, hard) in cfg["rlimits"].items():
                resource.setrlimit(getattr(resource, name), (soft, hard))
            uid = cfg["uid"]
            if uid is not None:  # root is exempt from RLIMIT_NPROC: the program runs as a uid of its own
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.execv(cfg["argv"][0], cfg["argv"])
        except BaseException as e:  # noqa: BLE001  (nothing may escape a forked child)
            os.write(2, f"sandbox launcher: cannot start the program: {type(e).__name__}: {e}\n".encode())
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    report = {"exit": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime,
              "maxrss_kb": usage.ru_maxrss}
    os.write(status_fd, json.dumps(report).encode())


if __name__ == "__main__":
    main()
