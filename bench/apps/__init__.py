"""The WSGI apps `run_pipeline.py` serves with gunicorn, one GET endpoint each."""
