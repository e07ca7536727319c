"""Lifecycle shared by the dev servers: spawn, wait until ready, stop, kill, restart."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from .process import (
    LOOPBACK,
    die_with_parent,
    free_port,
    group_members,
    signal_all,
    tail,
    wait_gone,
)

# How often a started server is probed while it boots.
_POLL_INTERVAL = 0.02
# Starts that lose a race are retried: an auto-chosen port taken between free_port() and
# bind(), or a parent directory made untraversable under us (see pgcluster.grant_traverse).
_ATTEMPTS = 3
_TRANSIENT = ("Address already in use", "Permission denied")


class ServerError(RuntimeError):
    """A dev server failed to start, answer or stop."""


class _Transient(ServerError):
    """The start lost a race (port taken, permissions changed under it): try again."""

    def __init__(self, log: str) -> None:
        super().__init__(log)
        self.port_in_use = "Address already in use" in log


class Started(abc.ABC):
    """`with thing:` starts it and stops it whatever happens inside."""

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ManagedServer(Started):
    """A server process owned by this Python process, listening on one loopback TCP port.

    The server runs in its own session (so a terminal's Ctrl-C reaches only its owner, who
    shuts it down in order) and receives `parent_death_signal` if its owner dies.
    """

    name: ClassVar[str]
    graceful_signal: ClassVar[int] = signal.SIGTERM
    parent_death_signal: ClassVar[int] = signal.SIGTERM

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self._port_given = port is not None
        # Chosen once: a restart reuses it, so URLs handed out stay valid.
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a concrete server provides -------------------------------------------------

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Client URL of the server."""

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Get the data dir ready for a start (create, initialise, clear stale locks)."""

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """Return the argv that runs the server in the foreground."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """Tell whether *this* server (not another one on the port) answers requests."""

    def _popen_kwargs(self) -> dict[str, Any]:
        """Extra Popen arguments (user, env, cwd)."""
        return {}

    # -- public API ----------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """File receiving the server's stdout and stderr (appended across restarts)."""
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """Pid of the running server process, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Tell whether the server process is alive (it may still be booting)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server (no-op when running) and wait until it answers."""
        if self.running:
            return self
        self._forget()
        for attempt in range(1, _ATTEMPTS + 1):
            self._prepare()
            self._spawn()
            try:
                self._wait_ready()
            except _Transient as race:
                self._forget()
                if race.port_in_use and self._port_given:
                    raise ServerError(
                        f"{self.name}: port {self.host}:{self.port} is already in use"
                    ) from None
                if attempt == _ATTEMPTS:
                    msg = f"{self.name} failed to start {_ATTEMPTS} times; last log:\n{race}"
                    raise ServerError(msg) from None
                if race.port_in_use:
                    self.port = free_port(self.host)
            else:
                return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully; SIGKILL whatever is left after `timeout` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.kill(proc.pid, self.graceful_signal)
                proc.wait(timeout)
        self.kill()  # reaps, and clears helpers left in the group

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash or OOM kill would."""
        proc = self._proc
        if proc is None:
            return
        # The server leads its own session, so its pid is the process group of its helpers
        # (e.g. postgres backends, which would otherwise hold shared memory a restart needs).
        members = group_members(proc.pid)
        signal_all(members, signal.SIGKILL)
        proc.wait()
        left = wait_gone(members, timeout=10.0)
        if left:
            raise ServerError(f"{self.name}: processes {left} survived SIGKILL")
        self._proc = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} data={self.data_dir}>"

    # -- internals -----------------------------------------------------------------------

    def _forget(self) -> None:
        """Drop a process that already exited (reap it and anything left in its group)."""
        if self._proc is not None:
            self.kill()

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*die_with_parent(self.parent_death_signal), *self._command()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_kwargs(),
            )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                log = tail(self.log_path, start=self._log_offset)
                if any(marker in log for marker in _TRANSIENT):
                    raise _Transient(log)
                self._forget()
                raise ServerError(
                    f"{self.name} exited with code {code} while starting; "
                    f"{self.log_path} says:\n{log}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} did not answer within {self.startup_timeout:.0f}s; "
                    f"{self.log_path} says:\n{tail(self.log_path, start=self._log_offset)}"
                )
            time.sleep(_POLL_INTERVAL)
