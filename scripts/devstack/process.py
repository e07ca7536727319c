"""Linux process helpers for the dev stack: free ports, parent-death signals, process trees."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36

LOOPBACK = "127.0.0.1"

# Ports handed out by free_port() in this process: two servers asking in a row must not get
# the same port just because the first one has not bound it yet.
_handed_out: set[int] = set()


class SignalFlag:
    """A stop flag a signal handler may set: `threading.Event` without its lock.

    `Event.set()` takes the event's (non-reentrant) condition lock. Called from a signal
    handler while the main thread sits in `Event.wait()` holding that same lock (the short
    moment after each timed wake-up), it waits for itself forever: `make dev` then ignored
    SIGTERM and never stopped. Setting a plain attribute takes no lock; `wait` polls in
    short sleeps (the handler runs between them).
    """

    _SLICE = 0.05

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Raise the flag; safe inside a signal handler."""
        self._set = True

    def is_set(self) -> bool:
        """Tell whether the flag is raised."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until the flag is raised or `timeout` seconds passed; return the flag."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(self._SLICE, left))
        return self._set


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that is free right now (and not handed out before)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free TCP port found")


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Tell whether `port` can be bound on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """Tell whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@functools.cache
def _prctl() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fn: Callable[..., int] = libc.prctl
    return fn


def die_with_parent(sig: int = signal.SIGTERM) -> list[str]:
    """Return an argv prefix making the child receive `sig` when this process dies.

    `setpriv` (util-linux) sets PR_SET_PDEATHSIG and execs the command, whose pid stays
    the same. Not a `preexec_fn`: with one, CPython forks and runs Python in the child,
    every `os.register_at_fork` handler included, which can block for good on a lock
    another thread of a multi-threaded parent held at the fork (a CI run hung 240 s in
    `Popen` that way). Without one, subprocess runs no Python between fork and exec.
    The kernel sends the signal when the *thread* that forked the child exits, so start
    servers from a long-lived thread (the main thread in pytest and in dev.py).
    """
    return ["setpriv", f"--pdeathsig={signal.Signals(sig).name}", "--"]


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER) so none escapes the final sweep."""
    return _prctl()(_PR_SET_CHILD_SUBREAPER, 1) == 0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """Tell whether `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def process_name(pid: int) -> str | None:
    """Return the command name of `pid` (from /proc), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Return every live descendant of `pid`, found through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """Return the live processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send `sig` to each pid, ignoring the ones that are already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every pid has exited (zombies count as gone); return the survivors."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in left if is_alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def reap_children() -> None:
    """Collect the exit status of every exited child (adopted orphans included), never blocking.

    Only once each Popen has been waited for: `waitpid(-1)` would steal a status a Popen owns.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def tail(path: Path, lines: int = 30, start: int = 0) -> str:
    """Return the last `lines` lines of `path` after byte offset `start` ('' if missing)."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
