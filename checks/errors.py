"""Errors a user can fix.

Anything a person typed or wrote (a params file, a CLI flag, a notebook parameter) that is wrong raises
:class:`UsageError`. The CLI prints it as one line — what, where, why — and exits with code 2; it never
shows a traceback for these, because the fix is in the input, not in the code.
"""

from __future__ import annotations

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: printed as ``dra-lab: <where>: <what> (<why>)`` with exit code 2.

    ``where`` names the file, flag or parameter; ``message`` says what is wrong and why.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def one_line(self) -> str:
        """The single line shown to the user; newlines are folded so nothing spills over."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        return " ".join(text.split())
