"""Dead letters: `models.py` (the table), `service.py` (record, list, replay), `views.py`
(`/v1/admin/dead-letters`). Jobs and history both write here; neither imports the other
through it."""
