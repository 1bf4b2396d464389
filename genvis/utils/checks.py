"""Checks of configuration values, shared by the dataclass configs' ``validate`` methods."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from genvis.errors import ConfigError


def dataclass_from_mapping(cls: type, data: Any, source: str) -> Any:
    """``cls(**data)`` for a config dataclass; None gives the defaults.

    Raises:
        ConfigError: naming ``source``, when ``data`` is not a mapping or has keys that are
            not fields of ``cls`` (the message lists the known ones). Values are checked by
            the caller (the dataclass's ``validate``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, f"must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(source, f"unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**dict(data))


def check_int(source: str, value: Any, minimum: int) -> None:
    """ConfigError naming ``source`` unless ``value`` is an int (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(source, f"must be an integer >= {minimum}, got {value!r}")


def check_float(source: str, value: Any, minimum: float = 0.0) -> None:
    """ConfigError naming ``source`` unless ``value`` is a number (not a bool) >= ``minimum``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(source, f"must be a number >= {minimum}, got {value!r}")
