"""Generation history: `records.py` (rows, redaction, listing), `queue.py` + `journal.py`
(records queued in Redis, written behind the answer), `tasks.py` (beat's drain)."""
