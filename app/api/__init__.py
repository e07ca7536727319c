"""HTTP surface: unversioned blueprints (probes, docs) and one package per API version."""
