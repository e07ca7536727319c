"""`python -m provider_sim` (with `scripts/` on the path)."""

from provider_sim.server import run

run()
