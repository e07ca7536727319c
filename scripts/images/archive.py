"""Export a freshly built image to its oci-archive, unless the archive already holds it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from images import buildah, records
from images.progress import say, stage


def export_if_changed(ref: str, archive: Path, *, started: float, log: Path) -> records.Built:
    """The archive of `ref`, exported again only when the image id changed.

    The record keeps the time of the build that wrote the archive; the returned value
    carries how long this call's build took (`started`: its time.monotonic()).
    """
    info = buildah.inspect(ref)
    if info is None:
        raise LookupError(f"{ref} is not in buildah's storage after its build")
    previous = records.load(archive)
    if previous is not None and previous.image_id == info.id and previous.ref == ref:
        say(f"{ref}: image unchanged, archive {archive.name} kept")
        return dataclasses.replace(previous, seconds=round(time.monotonic() - started, 1))
    with stage(f"export {ref} to {archive.name}"):
        buildah.push_archive(ref, archive, log=log)
    built = records.Built(
        ref=ref,
        archive=archive,
        image_id=info.id,
        key=info.id,
        size=buildah.size(ref),
        rebuilt=True,
        seconds=round(time.monotonic() - started, 1),
    )
    built.save()
    return built
