"""Child processes that die with their parent, free loopback ports and process checks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.process import die_with_parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    log: Path,
    env: Mapping[str, str] | None = None,
    *,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start argv with output appended to log; the child never outlives this process.

    new_session: keep the child out of the terminal's process group, so Ctrl-C reaches
    only this process, which then stops its children in order.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*die_with_parent(signal.SIGKILL), *(os.fspath(a) for a in argv)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=new_session,
        )


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop proc with SIGTERM, then SIGKILL after grace seconds, and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pid_alive(pid: int) -> bool:
    """Tell whether pid runs (a zombie counts as gone: it holds no ports or files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 is the state; the command name before it is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a log file, for error messages."""
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"
