"""The structured-api Kubernetes operator (Kopf).

Imported as `sapi_operator`: a package named `operator` would shadow the standard
library module of that name. Handlers live in `sapi_operator.handlers` only; the pure
reconcile logic in `reconcile`, `credentials` and `drift.plan`; the I/O in `store` and
`kube`. See docs/operator.md.
"""
