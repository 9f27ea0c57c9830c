"""The one base for errors a person can act on: the message says what is wrong and where, and the
exit code says what kind of failure it is. The CLI maps every one of them in one place."""

from __future__ import annotations


class TetherError(Exception):
    exit_code = 2  # bad input: a file, an argument, a repository or a store that cannot be used
