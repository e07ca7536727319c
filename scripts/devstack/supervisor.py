"""Run named child processes with prefixed, logged output; stop them all, leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from .process import (
    SignalFlag,
    descendants,
    die_with_parent,
    group_members,
    reap_children,
    signal_all,
    wait_gone,
)

_COLORS = ("36", "33", "35", "32", "34", "31")


@dataclass
class Child:
    """One supervised process and the thread copying its output."""

    name: str
    argv: Sequence[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    pump: threading.Thread = field(repr=False)

    @property
    def returncode(self) -> int | None:
        """Exit code, or None while it runs."""
        return self.proc.poll()


class Supervisor:
    """Start children in their own sessions and stop them in reverse order.

    Own sessions: a terminal's Ctrl-C reaches only the supervisor, which then shuts the
    children down once and in order (a second SIGINT would turn Celery's warm shutdown cold).
    """

    def __init__(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_dir: Path,
        echo: TextIO | None = None,
    ) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.log_dir = log_dir
        self.echo = echo if echo is not None else sys.stdout
        self.children: list[Child] = []
        self._echo_lock = threading.Lock()
        self._color = self.echo.isatty() and "NO_COLOR" not in os.environ

    def say(self, text: str) -> None:
        """Print a line without interleaving it with children's output."""
        with self._echo_lock:
            self.echo.write(text + "\n")
            self.echo.flush()

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start `argv` as child `name`; its output goes to <log_dir>/<name>.log and the echo."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        proc = subprocess.Popen(
            [*die_with_parent(signal.SIGTERM), *argv],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        prefix = self._prefix(name, len(self.children))
        pump = threading.Thread(
            target=self._pump, args=(proc.stdout, log_path, prefix), name=f"pump-{name}"
        )
        pump.daemon = True
        pump.start()
        child = Child(name=name, argv=list(argv), log_path=log_path, proc=proc, pump=pump)
        self.children.append(child)
        return child

    def run(self, name: str, argv: Sequence[str], stop: SignalFlag) -> Child:
        """Run a one-shot child to completion (or until `stop`); it is then not supervised."""
        child = self.spawn(name, argv)
        while child.returncode is None and not stop.wait(0.1):
            pass
        if child.returncode is not None:
            child.pump.join(timeout=2.0)
            self.children.remove(child)
        return child

    def first_exited(self) -> Child | None:
        """Return a child that has exited, if any."""
        return next((c for c in self.children if c.returncode is not None), None)

    def stop_all(self, grace: float, hurry: SignalFlag | None = None) -> list[str]:
        """SIGTERM children (newest first), wait up to `grace` s, SIGKILL the rest.

        Returns the names of children whose process group had to be SIGKILLed. `hurry` cuts
        the wait short.
        """
        for child in reversed(self.children):
            if child.returncode is None:
                # Only the leader: gunicorn and Celery stop their own workers in order.
                signal_all([child.proc.pid], signal.SIGTERM)
            else:
                # The leader died: whatever it left in its group gets the signal itself.
                signal_all(group_members(child.proc.pid), signal.SIGTERM)
        deadline = time.monotonic() + grace
        # Wait for whole groups, not only leaders: gunicorn's master exits after its workers,
        # but a leader that crashed leaves its group behind.
        while any(group_members(c.proc.pid) for c in self.children):
            if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
                break
            time.sleep(0.05)
        killed = []
        for child in self.children:
            members = group_members(child.proc.pid)
            if members:
                killed.append(child.name)
            signal_all(members, signal.SIGKILL)
            child.proc.wait()
            wait_gone(members, timeout=5.0)
        for child in self.children:
            child.pump.join(timeout=2.0)
        return killed

    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<8}|"
        if self._color:
            return f"\033[{_COLORS[index % len(_COLORS)]}m{label}\033[0m "
        return label + " "

    def _pump(self, stream: BinaryIO, log_path: Path, prefix: str) -> None:
        with log_path.open("wb") as log, stream:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                text = line.decode(errors="replace").rstrip("\n")
                with self._echo_lock:
                    self.echo.write(f"{prefix}{text}\n")
                    self.echo.flush()


def kill_descendants(timeout: float = 5.0) -> list[int]:
    """SIGKILL and reap every remaining descendant of this process; return their pids.

    Catches what escaped a process group (e.g. a grandchild that called setsid); with
    PR_SET_CHILD_SUBREAPER set, orphans of our children are our descendants too. Call it
    last, once every Popen has been waited for.
    """
    left = descendants(os.getpid())
    signal_all(left, signal.SIGKILL)
    wait_gone(left, timeout)
    reap_children()
    return left
