"""200k-character texts aimed at each redaction pattern (app/ai/history/records.py).

Runs that almost match (one character short, or missing the `@`, the dot, the last
digit) make a backtracking pattern rescan them from every position. Standard library
only: test_prompt_limits.py measures them in a child process that imports this module.
"""

from __future__ import annotations

from typing import Final

SHAPES: Final = {
    "email-local-part": "a." * 100_000,  # the old `[\w.+\-]+@`: minutes
    "email-dashes": "a-" * 100_000,
    "email-no-domain": ("x" * 63 + "@") * 3_125,
    "email-no-dot": ("@" + "x" * 63) * 3_125,
    "numbers": "1 " * 100_000,
    "number-no-last-digit": "1" + "-" * 199_999,
    "token-no-at": "a" * 200_000,
    "token-one-short": ("a" * 31 + "!") * 6_250,
    "key-prefixes": "sk-" * 66_666 + "xx",
    "bearer-no-credential": ("Bearer " * 28_572)[:200_000],
}
