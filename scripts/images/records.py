"""The oci-archives under the cache and the JSON record beside each one.

`<name>.oci.tar` is what containerd imports; `<name>.oci.tar.json` says which image it
holds (reference, image id, cache key, sizes, how long the build took), so `list` and the
up-to-date checks never open an archive.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from images.paths import CACHE_DIR


@dataclass(frozen=True)
class Built:
    """One image exported to an oci-archive."""

    ref: str
    archive: Path
    image_id: str
    key: str
    size: str
    #: True when this call built or exported it, False when the cached archive was current.
    rebuilt: bool
    seconds: float

    def record(self) -> Path:
        """Path of the JSON record beside the archive."""
        return self.archive.with_name(self.archive.name + ".json")

    def save(self) -> None:
        """Write the record (atomically)."""
        data = asdict(self) | {"archive": str(self.archive)}
        data.pop("rebuilt")
        partial = self.record().with_name(f".{self.record().name}.{os.getpid()}")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(partial, self.record())


def load(archive: Path) -> Built | None:
    """The record of an archive, if both exist."""
    record = archive.with_name(archive.name + ".json")
    if not (archive.is_file() and record.is_file()):
        return None
    data = json.loads(record.read_text())
    return Built(
        ref=data["ref"],
        archive=archive,
        image_id=data["image_id"],
        key=data["key"],
        size=data["size"],
        rebuilt=False,
        seconds=float(data["seconds"]),
    )


def all_records(cache_dir: Path = CACHE_DIR) -> list[Built]:
    """Every archive with a record, oldest first."""
    found = (load(p) for p in cache_dir.glob("*.oci.tar"))
    return sorted((b for b in found if b is not None), key=lambda b: b.archive.stat().st_mtime)


def prune(repository: str, keep: Path, cache_dir: Path = CACHE_DIR, newest: int = 1) -> None:
    """Delete archives of `repository` (the ref without its tag) but `keep` and the
    `newest - 1` most recent others."""
    others = [
        b.archive
        for b in all_records(cache_dir)
        if b.ref.rsplit(":", 1)[0] == repository and b.archive != keep
    ]
    for stale in list(reversed(others))[max(0, newest - 1) :]:
        stale.unlink(missing_ok=True)
        stale.with_name(stale.name + ".json").unlink(missing_ok=True)
