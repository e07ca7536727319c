"""Run a command in an image the way the charts run it, without a cluster.

`buildah run` cannot make the root file system read-only, so this mounts the image through
a throwaway buildah container and starts it with runc (the runtime the cluster's
containerd uses) under the pods' security settings: read-only root file system, the
image's non-root user (or the one asked for), no capabilities, no-new-privileges, a fresh
world-writable directory (what kubelet makes an emptyDir) wherever the charts mount one,
and its own network namespace holding only loopback.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from images import buildah


def _user(spec: str) -> dict[str, int]:
    uid, _, gid = spec.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ValueError(f"user must be numeric uid[:gid] (as the charts' runAsUser), not {spec!r}")
    return {"uid": int(uid), "gid": int(gid or uid)}


def _spec(
    template: dict[str, Any],
    *,
    root: Path,
    args: list[str],
    env: list[str],
    cwd: str,
    user: str,
    volumes: Mapping[str, Path],
) -> dict[str, Any]:
    spec = dict(template)
    process = dict(spec["process"])
    process.update(terminal=False, args=args, env=env, cwd=cwd, user=_user(user))
    # securityContext.capabilities.drop: [ALL]; allowPrivilegeEscalation: false.
    process["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "ambient")}
    process["noNewPrivileges"] = True
    spec["process"] = process
    spec["root"] = {"path": str(root), "readonly": True}
    spec["hostname"] = "sandbox"
    spec["mounts"] = [
        *spec["mounts"],
        *(
            {"destination": path, "type": "bind", "source": str(source),
             "options": ["rbind", "rw", "nosuid", "nodev"]}
            for path, source in volumes.items()
        ),
    ]  # fmt: skip
    return spec


def run(
    image: str,
    argv: Sequence[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    empty_dirs: Sequence[str] = ("/tmp",),
    entrypoint: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run argv (after the image's ENTRYPOINT when `entrypoint`) and return its result.

    user defaults to the image's USER, which must then be numeric. empty_dirs: where the
    chart mounts emptyDir volumes. stdout and stderr are merged into `.stdout`.
    """
    runc = shutil.which("runc")
    if runc is None:
        raise FileNotFoundError("runc not found: apt-get install --no-install-recommends runc")
    info = buildah.inspect(image)
    if info is None:
        raise LookupError(f"{image} is not in buildah's storage")
    config = info.config
    args = [*(config.get("Entrypoint") or [] if entrypoint else []), *argv]
    variables = dict(line.split("=", 1) for line in config.get("Env") or [])
    variables.update(env or {})
    container = buildah.WorkingContainer(image)
    name = f"sapi-sandbox-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="sapi-sandbox-") as scratch:
        bundle, state = Path(scratch) / "bundle", Path(scratch) / "state"
        bundle.mkdir()
        volumes = {path: Path(scratch) / "volumes" / str(i) for i, path in enumerate(empty_dirs)}
        for source in volumes.values():
            source.mkdir(parents=True)
            source.chmod(0o777)  # as kubelet creates an emptyDir
        try:
            root = container.mount()
            subprocess.run([runc, "spec", "--bundle", str(bundle)], check=True)
            template = json.loads((bundle / "config.json").read_text())
            spec = _spec(
                template,
                root=root,
                args=args,
                env=[f"{k}={v}" for k, v in variables.items()],
                cwd=config.get("WorkingDir") or "/",
                user=user or config.get("User") or "0",
                volumes=volumes,
            )
            (bundle / "config.json").write_text(json.dumps(spec))
            base = [runc, "--root", str(state)]
            try:
                return subprocess.run(
                    [*base, "run", "--bundle", str(bundle), name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                )
            finally:
                subprocess.run([*base, "kill", name, "KILL"], capture_output=True, check=False)
                subprocess.run([*base, "delete", "--force", name], capture_output=True, check=False)
        finally:
            container.umount()
            container.remove()
