"""API version lifecycle: Deprecation/Sunset/Link headers, brownouts, 410, usage, changes.

`lifecycle.py` (what a version's spec means at a given time), `extension.py` (the
pipeline stage and `init_app`), `usage.py` (per-version, per-caller
request counts for ApiVersion status), `changelog.py` + `views.py` (`/versions`,
`/versions/{a}/changes-to/{b}`). See docs/versioning.md. Nothing is imported here.
"""
