"""A task for the trace test: the worker calls a loopback "provider" with httpx.

Loaded into the test worker with `celery worker --include tests.observability.trace_tasks`
until the AI gateway's own job task exists (issue 5); then the test switches to it.
"""

from __future__ import annotations

import httpx
from celery import shared_task

TASK_NAME = "tests.observability.call_provider"


@shared_task(name=TASK_NAME)
def call_provider(url: str) -> int:
    """POST to `url` like a provider call and return the status code."""
    with httpx.Client(timeout=5.0) as client:
        return client.post(url, json={"model": "echo", "input": "hi"}).status_code
