"""Drive schemathesis without its pytest plugin: every operation, both generation modes.

schemathesis' lazy `from_fixture(...).parametrize()` reads pytest internals that pytest 9
removed (`Function._nodeid`), so the operations are walked here with Hypothesis directly.
Failures of all operations are collected before anything is raised, so one run reports
every operation that broke its document, not just the first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

#: What "answers as documented" means: no 5xx; status, content type, headers and body as
#: the document says; and invalid input (negative mode) refused with a 4xx.
CHECKS: list[Callable[..., Any]] = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]

#: schemathesis' list of statuses that reject invalid input, plus 413: a body over
#: MAX_CONTENT_LENGTH is refused for its size before validation (VAL_PAYLOAD_TOO_LARGE,
#: documented on every operation with a body).
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
            }
        }
    }
)


def fuzz_settings(max_examples: int) -> settings:
    """Bounded, reproducible Hypothesis settings."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_operations(schema: Any, headers: dict[str, str], max_examples: int) -> dict[str, str]:
    """Run every operation of `schema` in both modes; failures by operation label."""
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @fuzz_settings(max_examples)
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): negative mode is empty.
                continue
            except (Exception, BaseExceptionGroup) as exc:  # collect, report them all at once
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    return failures
