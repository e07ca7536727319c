"""Tasks for the observability tests: a provider call (traces) and a flaky task (retries).

Loaded into test workers with `celery worker --include tests.core.observability.trace_tasks`
until the AI gateway's own job task exists; then the test switches to it.
"""

from __future__ import annotations

from typing import Any

import httpx
from celery import shared_task

TASK_NAME = "tests.core.observability.call_provider"


@shared_task(name=TASK_NAME)
def call_provider(url: str) -> int:
    """POST to `url` like a provider call and return the status code."""
    with httpx.Client(timeout=5.0) as client:
        return client.post(url, json={"model": "echo", "input": "hi"}).status_code


FLAKY_TASK = "tests.core.observability.flaky"


@shared_task(name=FLAKY_TASK, bind=True, max_retries=3)
def flaky(self: Any, key: str) -> str:
    """Fail the first attempt (asking for a retry), succeed on the second."""
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return key
