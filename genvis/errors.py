"""Errors raised on bad input.

Every error that a user can cause names the offending file (or config key) and the problem,
so that the message alone says what to fix.
"""

from __future__ import annotations

from os import PathLike


class GenvisError(Exception):
    """Base class of the errors genvis raises on bad input or bad configuration."""


class InputError(GenvisError, ValueError):
    """A file (or other named input) is missing, unreadable or malformed.

    Args:
        source: the file path or the name of the input (e.g. a config key).
        problem: what is wrong with it, in words.

    The message reads ``"<source>: <problem>"``.
    """

    def __init__(self, source: str | PathLike | None, problem: str):
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")


class ConfigError(InputError):
    """A configuration value is missing or invalid; ``source`` names the config key."""


class InputWarning(UserWarning):
    """An input that genvis accepts but that is probably not what the user meant (e.g.
    duplicate results); scored as the official tools would. The CLI prints it on one line.

    Args:
        source: the file path or the name of the input.
        problem: what is odd about it and how it is treated, in words.
    """

    def __init__(self, source: str | PathLike | None, problem: str):
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")
