"""One line when a long step starts, its elapsed time when it ends; child processes niced.

Progress goes to stderr so stdout stays the list of archive paths the CLI prints.
Heavy children (debootstrap, buildah builds, archive exports) run under `nice -n 10`:
the machine has 2 CPUs shared with other work.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

NICE: Final = ("nice", "-n", "10")


def say(message: str) -> None:
    """Print one progress line."""
    print(f"[images] {message}", file=sys.stderr, flush=True)


def elapsed(seconds: float) -> str:
    """`42.1 s` or `3 min 07 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextlib.contextmanager
def stage(what: str) -> Iterator[None]:
    """Announce a long step and report how long it took (or that it failed)."""
    say(f"{what} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"{what}: failed after {elapsed(time.monotonic() - started)}")
        raise
    say(f"{what}: done in {elapsed(time.monotonic() - started)}")


class CommandError(RuntimeError):
    """A child process failed; the message holds the command and the end of its output."""


def output(argv: Sequence[str | os.PathLike[str]], *, check: bool = True) -> str:
    """stdout of a short command (stderr kept apart, shown only when it fails)."""
    command = [os.fspath(a) for a in argv]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise CommandError(
            f"`{' '.join(command)}` exited with {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result.stdout


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    heavy: bool = False,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    echo: Callable[[str], bool] | None = None,
) -> str:
    """Run argv and return its stdout (stderr merged into it).

    heavy: prefix `nice -n 10`. log: also append the output there. echo: lines for which it
    returns True are printed as progress while the command runs (e.g. buildah's STEP lines).
    """
    command = [*(NICE if heavy else ()), *(os.fspath(a) for a in argv)]
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        sink = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(open(log, "a", encoding="utf-8"))
            sink.write(f"$ {' '.join(command)}\n")
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env={**os.environ, **env} if env is not None else None,
            cwd=cwd,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if sink is not None:
                sink.write(line)
            if echo is not None and echo(line):
                say("  " + line.rstrip())
        code = proc.wait()
    if code != 0:
        where = f" (full log: {log})" if log is not None else ""
        raise CommandError(
            f"`{' '.join(command)}` exited with {code}{where}:\n{''.join(lines[-40:])}"
        )
    return "".join(lines)
