"""The first ten minutes: `make dev` on a fresh data directory, then README "Try it" as written.

The README's block runs in bash unchanged except for the API port (8000 unless something
else holds it); every `#>` line under a command is an answer the output must show, in
order (`...` stands for anything). The banner's "Next steps" must be commands the README
block runs, so the banner is proven by the same run.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.process import port_is_free

from tests.support.processes import ManagedProcess, ProcessError, child_env, free_port, run_in_group

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BANNER_DONE = "Ctrl-C stops everything."
DEFAULT_PORT = 8000


def try_it_block(text: str) -> str:
    """The shell code between the README's try-it markers."""
    found = re.search(r"<!-- try-it:begin -->\s*```sh\n(.*?)```\s*<!-- try-it:end -->", text, re.S)
    assert found, "README.md lost its try-it block"
    return found.group(1)


def expected_answers(block: str) -> list[str]:
    """The `#>` lines of the block, in order."""
    return [line[3:] for line in block.splitlines() if line.startswith("#> ")]


def _pattern(answer: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in answer.split("...")))


def assert_answers_in_order(output: str, answers: list[str]) -> None:
    """Each answer matches an output line after the previous answer's line."""
    lines = output.splitlines()
    at = 0
    for answer in answers:
        pattern = _pattern(answer)
        for index in range(at, len(lines)):
            if pattern.fullmatch(lines[index].strip()):
                at = index + 1
                break
        else:
            raise AssertionError(f"{answer!r} not in the output after line {at}:\n{output}")


def test_answers_are_matched_in_order_with_wildcards() -> None:
    output = '{"id": "1", "roles": ["admin"]}\n200\n429\n'
    assert_answers_in_order(output, ['{"id": "...", "roles": ["admin"]}', "200", "429"])
    with pytest.raises(AssertionError):
        assert_answers_in_order(output, ["429", "200"])
    with pytest.raises(AssertionError):
        assert_answers_in_order(output, ["201"])


def _uv_on_path(bin_dir: Path) -> str:
    """PATH with `uv` on it (the README calls `uv run`; `make` may have used `python3 -m uv`)."""
    import os

    path = os.environ.get("PATH", "")
    if shutil.which("uv") is None:
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim = bin_dir / "uv"
        shim.write_text('#!/bin/sh\nexec python3 -m uv "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
        path = f"{bin_dir}:{path}"
    return path


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int, dict[str, str]]]:
    """`make dev` on a fresh DEV_DIR; yields it once its banner is printed."""
    port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
    env = child_env(
        DEV_DIR=str(tmp_path / "dev"),
        PORT=str(port),
        DEV_POSTGRES_PORT=str(free_port()),
        DEV_REDIS_PORT=str(free_port()),
        AI_SIM_PORT=str(free_port()),
        API_METRICS_PORT="0",
        METRICS_PORT="0",
        DEV_STOP_GRACE="15",
        PATH=_uv_on_path(tmp_path / "bin"),
    )
    for inherited in ("DATABASE_URL", "REDIS_URL", "APP_ENV", "SECRET_KEY", "FLASK_APP"):
        env.pop(inherited, None)
    dev = ManagedProcess(
        name="make dev", args=["make", "dev"], env=env, cwd=ROOT,
        log_path=tmp_path / "make-dev.log", stop_timeout=60,
    ).start()  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while BANNER_DONE not in dev.output():
            dev.check_alive()
            if time.monotonic() > deadline:
                raise ProcessError(f"make dev printed no banner in 240 s:\n{dev.tail(80)}")
            time.sleep(0.5)
        yield dev, port, env
    finally:
        dev.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_try_it_runs_as_written_against_a_fresh_make_dev(
    dev_stack: tuple[ManagedProcess, int, dict[str, str]],
) -> None:
    dev, port, env = dev_stack
    block = try_it_block(README.read_text(encoding="utf-8"))
    banner = dev.output()[dev.output().rfind("Next steps") :]
    commands = [
        line.strip() for line in banner.splitlines() if line.startswith("       ") and line.strip()
    ]
    assert len(commands) == 3, banner
    for command in commands:
        assert command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{DEFAULT_PORT}") in block
    assert f"http://127.0.0.1:{port}/docs" in banner

    script = "set -eo pipefail\n" + block.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")
    done = run_in_group(["bash", "-c", script], timeout=300, env={**env, "NO_COLOR": "1"})

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{dev.tail(60)}"
    assert_answers_in_order(done.stdout, expected_answers(block))
    assert "Traceback" not in done.stderr
    assert " 500 " not in dev.output() and '"status":500' not in dev.output()
