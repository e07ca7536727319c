"""Response cache for GETs: ETag / 304, keys by caller and version, single-flight.

`store.py` (Redis), `service.py` (`get_or_set`, single-flight), `http.py` (`@cached`
views, ETags), `extension.py` (`init_app`). See docs/caching.md.
"""
