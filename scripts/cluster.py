"""One-node Kubernetes cluster on this machine: `up [--detach]`, `status`, `down`.

Usage: `uv run python scripts/cluster.py up --detach` (returns once the node is Ready and
CoreDNS answers; prints the KUBECONFIG to export), `... status`, `... down` (also removes
what a SIGKILLed `up` left behind). `up` without --detach stays in the foreground until
Ctrl-C. Needs root. See docs/cluster.md and scripts/kubetools/cluster.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubetools.cluster import main

if __name__ == "__main__":
    sys.exit(main())
