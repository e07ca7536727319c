"""Real processes for tests: a Celery worker, a live HTTP server, clean teardown.

Every child runs in its own session (process group) and gets SIGTERM from the kernel if
the test process dies (PR_SET_PDEATHSIG through setpriv(1)), so a crashed pytest leaves nothing
behind. Teardown sends SIGTERM to the whole group, waits, then SIGKILLs what is left and
reports any survivor: a test that leaks a process fails instead of slowing the next one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from celery import Celery
from devstack.process import die_with_parent
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

LOOPBACK: Final = "127.0.0.1"


class ProcessError(RuntimeError):
    """A helper process did not start, or did not stop cleanly."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, from /proc."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
        fields = raw[raw.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str
) -> float:
    """Poll `condition` until true; return the seconds it took or raise `ProcessError`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise ProcessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class ManagedProcess:
    """One child process (and its descendants) in its own process group, output to a log."""

    name: str
    args: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path | None = None
    stop_timeout: float = 15.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        if self.proc is None:
            raise ProcessError(f"{self.name} was not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        """True while the main process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        """Spawn the child in a new session, stdout and stderr to `log_path`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*die_with_parent(signal.SIGTERM), *self.args],
            env=dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        """Everything the child wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        """The last lines of output, for failure messages."""
        return "\n".join(self.output().splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the child's output if it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signal the group, wait for every member to go, SIGKILL stragglers.

        Returns the seconds the graceful stop took; raises `ProcessError` if anything had to
        be killed or survived, since either means the process does not shut down cleanly.
        """
        if self.proc is None:
            return 0.0
        pgid = self.proc.pid
        start = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = start + self.stop_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not group_members(pgid):
                break
            time.sleep(0.05)
        took = time.monotonic() - start
        leftovers = group_members(pgid)
        main_alive = self.proc.poll() is None
        if leftovers or main_alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        if main_alive or leftovers:
            raise ProcessError(
                f"{self.name} did not stop within {self.stop_timeout:.0f} s after signal "
                f"{sig} (killed: {leftovers or [pgid]}):\n{self.tail()}"
            )
        return took


def run_in_group(
    args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion in its own process group; nothing of it outlives the call.

    On timeout the whole group is killed and `ProcessError` raised with its stderr; members
    still alive after the main process exits (a browser's helpers) get SIGKILL.
    """
    proc = subprocess.Popen(
        [*die_with_parent(signal.SIGTERM), *args],
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise ProcessError(
            f"{args[0]} did not finish within {timeout:.0f} s:\n{stderr[-3000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessError):
            wait_for(lambda: not group_members(proc.pid), timeout=5, what="helpers to exit")
        if group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr)


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment plus `overrides`, unbuffered Python output.

    `METRICS_PORT` defaults to 0 (a free port the process picks): gunicorn masters and
    Celery workers of tests running side by side would all try 9808 otherwise, and only
    the first would serve its metrics. A test that scrapes one passes the port it chose.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("METRICS_PORT", "0")
    env.update(overrides)
    return env


@dataclass
class CeleryWorker:
    """A running `celery worker` process and the figures a test may want to report."""

    process: ManagedProcess
    nodename: str
    startup_seconds: float


@contextlib.contextmanager
def celery_worker(
    client: Celery,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    pool: str = "solo",
    concurrency: int = 1,
    start_timeout: float = 90.0,
) -> Iterator[CeleryWorker]:
    """Run `celery -A app.worker:celery_app worker` until the block ends.

    `client` is a Celery app on the same broker, used to wait until the worker answers a
    control ping (so tasks sent afterwards are consumed) and nothing more. Mingle, gossip
    and event heartbeats are off: a test worker has no peers, and each costs start time.
    """
    nodename = f"test-{pool}-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.worker:celery_app",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--hostname={nodename}",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]
    process = ManagedProcess(
        name=f"celery worker ({pool})",
        args=args,
        env=env,
        log_path=log_dir / f"celery-{pool}.log",
        stop_timeout=20.0,
    ).start()
    try:

        def answers() -> bool:
            process.check_alive()
            replies = client.control.ping(destination=[nodename], timeout=0.25) or []
            return any(nodename in reply for reply in replies)

        took = wait_for(answers, timeout=start_timeout, interval=0.1, what=process.name)
    except BaseException:
        with contextlib.suppress(ProcessError):
            process.stop()
        raise
    try:
        yield CeleryWorker(process=process, nodename=nodename, startup_seconds=took)
    finally:
        process.stop()  # SIGTERM = warm shutdown: finish the current task, then exit


@dataclass
class LiveServer:
    """A real HTTP server on loopback serving a Flask app from a thread."""

    server: BaseWSGIServer
    thread: threading.Thread
    requests: list[str]

    @property
    def port(self) -> int:
        """The bound port."""
        port: int = self.server.server_port
        return port

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def serve_in_thread(app: Flask) -> Iterator[LiveServer]:
    """Serve `app` with werkzeug's threaded server on an ephemeral loopback port.

    Every request path the server saw is recorded in `LiveServer.requests`, so a test can
    tell which assets a browser fetched from the app.
    """
    seen: list[str] = []
    lock = threading.Lock()

    def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with lock:
            seen.append(environ.get("PATH_INFO", ""))
        return app(environ, start_response)

    server = make_server(LOOPBACK, 0, recording, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(server=server, thread=thread, requests=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
