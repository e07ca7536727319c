"""The application on the one-node cluster: `make cluster` runs this after `cluster.py up`.

Usage: `uv run python scripts/devcluster.py up` (builds the images that are missing,
installs Traefik, the development dependencies and the chart, starts Prometheus and
prints the URLs), `... status`. `python scripts/cluster.py down` stops everything,
Prometheus included. Needs root and a running cluster. See docs/cluster.md and
scripts/kubetools/devcluster.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubetools.devcluster import main

if __name__ == "__main__":
    sys.exit(main())
