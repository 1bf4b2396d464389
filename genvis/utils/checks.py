"""Checks of configuration values, shared by the dataclass configs' ``validate`` methods."""

from __future__ import annotations

from typing import Any

from genvis.errors import ConfigError


def check_int(source: str, value: Any, minimum: int) -> None:
    """ConfigError naming ``source`` unless ``value`` is an int (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(source, f"must be an integer >= {minimum}, got {value!r}")


def check_float(source: str, value: Any, minimum: float = 0.0) -> None:
    """ConfigError naming ``source`` unless ``value`` is a number (not a bool) >= ``minimum``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(source, f"must be a number >= {minimum}, got {value!r}")
