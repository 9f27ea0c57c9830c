"""Reading progress out of tool outputs: the error a step ended on, the count of failing tests."""

from __future__ import annotations

import pytest

from tether.guard.signals import error_signature, failing_tests


@pytest.mark.parametrize("output, signature", [
    ('Traceback (most recent call last):\n  File "/a/b.py", line 3\nValueError: invalid literal for int(): \'x1\'',
     "ValueError: invalid literal for int(): '?'"),
    ("E       AssertionError: assert 3 == 4\nE        +  where 3 = f()", "AssertionError: assert N == N"),
    ("[ERROR] /home/u/src/main/java/Foo.java:[12,5] cannot find symbol", "Foo.java:[N,N] cannot find symbol"),
    ("src/lib.rs:4:5: error[E0425]: cannot find value `x`\nerror: aborting due to previous error",
     "aborting due to previous error"),
    ("fatal: not a git repository (or any of the parent directories): .git", "not a git repository (or any of "
                                                                               "the parent directories): .git"),
    ("all 12 checks passed", None),
    ("", None),
])
def test_error_signatures(output: str, signature: str | None):
    assert error_signature(output) == signature


@pytest.mark.parametrize("output, failing", [
    ("==== 3 failed, 10 passed in 0.52s ====", 3),
    ("==== 10 passed in 0.52s ====", 0),
    ("=== 1 failed, 2 passed, 1 error in 3.10s ===", 2),
    ("==== 2 errors in 0.30s ====", 2),
    ("=== 1 failed, 3 passed, 2 warnings in 1.00s ===", 1),
    ("Tests run: 5, Failures: 1, Errors: 0\n...\nTests run: 12, Failures: 2, Errors: 1, Skipped: 0", 3),
    ("Ran 4 tests in 0.001s\n\nFAILED (failures=2, errors=1)", 3),
    ("Ran 4 tests in 0.001s\n\nOK", 0),
    ("=== no tests ran in 0.01s ===", None),
    ("compiling...", None),
])
def test_failing_test_counts(output: str, failing: int | None):
    assert failing_tests(output) == failing
