"""What a tool's output says about progress, read the same way for any agent's runs: the error it
ended on (normalised, so the same failure reads the same however its numbers and names vary) and
how many tests failed. Pure functions of the text; the brakes fold them over a run."""

from __future__ import annotations

import re

# The last line of a Python traceback, a compiler's or a build tool's error line.
_ERROR = re.compile(
    r"^[ \t]*(?:E[ \t]+)?((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Failure|Exit)\b(?::[^\n]*)?)$"
    r"|^[ \t]*(?:\[ERROR\]|error(?:\[\w+\])?:|fatal:|FAILED:?)[ \t]*([^\n]+)$",
    re.MULTILINE,
)
_VARIABLE = [
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
    (re.compile(r"(['\"`]).*?\1"), "'?'"),  # quoted names and values
    (re.compile(r"(?:/[\w.+-]+)+/([\w.+-]+)"), r"\1"),  # a path: its file name
    (re.compile(r"\d+"), "N"),
]
_PYTEST = re.compile(r"^=+ ([^=\n]*\b(?:passed|failed|errors?|skipped|xfailed|deselected)\b[^=\n]*) in [\d.]+s\b",
                     re.MULTILINE)
_COUNT = re.compile(r"(\d+) (failed|errors?)\b")
_JUNIT = re.compile(r"Tests run: (\d+), Failures: (\d+), Errors: (\d+)")
_UNITTEST_FAILED = re.compile(r"^FAILED \((?:failures=(\d+))?(?:, )?(?:errors=(\d+))?", re.MULTILINE)
_UNITTEST_OK = re.compile(r"^Ran \d+ tests? in [\d.]+s\s+OK\b", re.MULTILINE)


def error_signature(output: str) -> str | None:
    """The last error line of the output, with its numbers, quoted values and paths' folders taken
    out; None when there is no error line."""
    last = None
    for match in _ERROR.finditer(output[-20_000:]):
        last = match.group(1) or match.group(2)
    if last is None:
        return None
    signature = last.strip()[:200]
    for pattern, replacement in _VARIABLE:
        signature = pattern.sub(replacement, signature)
    return signature


def failing_tests(output: str) -> int | None:
    """How many tests failed (failures and errors) by the test runner's own summary (pytest, JUnit
    through Maven or Gradle, unittest); None when the output has no summary."""
    tail = output[-20_000:]
    junit = _JUNIT.findall(tail)
    if junit:
        _, failures, errors = junit[-1]  # Maven prints the total last
        return int(failures) + int(errors)
    pytest = _PYTEST.findall(tail)
    if pytest:
        return sum(int(count) for count, _ in _COUNT.findall(pytest[-1]))
    failed_run = _UNITTEST_FAILED.findall(tail)
    if failed_run:
        failures, errors = failed_run[-1]
        return int(failures or 0) + int(errors or 0)
    if _UNITTEST_OK.search(tail):
        return 0
    return None
