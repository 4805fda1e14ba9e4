"""Errors a caller of kubetwin can fix (a bad setting, not a bug).

kubetwin is a library: it does not know how its embedder reports bad input. It raises :class:`ConfigError` with
what is wrong and which setting it concerns; an embedder's CLI turns that into its own one-line message (dra-lab
prints it like its own usage errors and exits 2). API failures are :class:`kubetwin.api.errors.ApiError`.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting kubetwin cannot run with: ``where`` names the setting, ``message`` says what and why."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def one_line(self) -> str:
        """The single line to show a person; newlines are folded so nothing spills over."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        return " ".join(text.split())


__all__ = ["ConfigError"]
