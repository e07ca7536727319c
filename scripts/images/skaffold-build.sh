#!/bin/sh
# skaffold's custom build command of the devcluster profile (skaffold.yaml): build $IMAGE
# with buildah and import it into the cluster's containerd (scripts/images/skaffold.py).
set -eu
cd "$(dirname "$0")/../.."
PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" exec uv run --frozen python -m images skaffold-build
