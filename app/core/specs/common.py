"""Shared field types for the specs."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, StringConstraints

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DURATION_PATTERN: Final = r"^[1-9][0-9]{0,6}(s|m|h|d)$"

#: A positive duration such as `30s`, `1m`, `1h`, `7d` (Kubernetes-style, one unit).
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
#: A Kubernetes object name (RFC 1123 label).
ObjectName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]
#: An amount of US dollars as a decimal string, at most 6 decimals (a millionth of a dollar
#: is the unit money budgets count in), e.g. `"5.00"`; positive.
UsdAmount = Annotated[
    str,
    StringConstraints(
        pattern=r"^([1-9][0-9]{0,8}(\.[0-9]{1,6})?|0\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|"
        r"00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$"
    ),
]
#: `MAJOR.MINOR` of an API version.
VersionString = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}\.[0-9]{1,3}$")]


def duration_seconds(value: str) -> int:
    """Seconds in a `Duration` string."""
    match = re.fullmatch(r"([0-9]+)([smhd])", value)
    if match is None:
        raise ValueError(f"not a duration: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


class SpecModel(BaseModel):
    """Base of every spec: unknown fields are errors, like a structural CRD schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
