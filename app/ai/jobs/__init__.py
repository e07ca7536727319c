"""Background AI jobs: `service.py` (submit, read, cancel), `runs.py` (one attempt),
`tasks.py` (Celery), `dead_letters.py` + `admin_views.py`, `models.py`."""
