"""Command line: `python -m images build [base|app|deps|all]`, `list`, `skaffold-build`."""

from __future__ import annotations

import argparse
import sys

from images import app, base, deps, records, skaffold
from images.progress import CommandError, elapsed


def main(argv: list[str] | None = None) -> int:
    """Parse argv and run one command; archive paths go to stdout, progress to stderr."""
    parser = argparse.ArgumentParser(prog="python -m images", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build images and print their oci-archives")
    build.add_argument("what", nargs="?", default="all", choices=["base", "app", "deps", "all"])
    commands.add_parser("list", help="the archives in the cache with their images")
    commands.add_parser(
        "skaffold-build", help="skaffold's custom build: build $IMAGE, import it into the cluster"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for built in records.all_records():
                print(f"{built.archive}\t{built.ref}\t{built.size}\t{elapsed(built.seconds)}")
            return 0
        if args.command == "skaffold-build":
            skaffold.build_and_import()
            return 0
        done: list[records.Built] = []
        if args.what in ("base", "all"):
            done += base.ensure_all()
        if args.what in ("deps", "all"):
            done += deps.build_all()
        if args.what in ("app", "all"):
            done.append(app.build())
    except (CommandError, FileNotFoundError) as error:
        print(f"[images] {error}", file=sys.stderr)
        return 1
    for built in done:
        print(built.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
