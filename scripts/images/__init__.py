"""Container images without Docker or a registry: buildah, local base images, oci-archives.

`python -m images build [base|app|deps|all]` (with scripts/ on the path) builds and prints
the oci-archive paths; `python -m images list` shows what the cache holds. docs/images.md
explains the images, the cache keys and the caveats.
"""
