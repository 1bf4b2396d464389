"""Reading torch files safely: ``torch.load(weights_only=True)`` with one-line errors.

genvis never runs code from a weights file: every ``.pt`` / ``.pth`` is read with
``weights_only=True``, which refuses pickled Python objects other than tensors and plain
containers. torch explains a refusal in a long multi-line text (that also suggests turning
the protection off); :func:`load_weights_only` turns it, and every other read failure, into
one :class:`~genvis.errors.InputError` line naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

from genvis.errors import InputError


def torch_load_problem(exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` failed with ``exc``.

    A weights-only refusal reads ``refused: it asks for Python object <module.name>,
    which genvis never loads (...)``; anything else ``truncated or corrupt (<first line>)``.
    """
    text = str(exc).strip()
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        m = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"Python object {m.group(1)}" if m else "Python objects other than tensors and plain data"
        return (f"refused: it asks for {what}, which genvis never loads (weights_only=True; nothing "
                "in the file was run); not a file genvis wrote, or tampered with")
    return f"truncated or corrupt ({exception_line(exc)})"


def exception_line(exc: BaseException, limit: int = 160) -> str:
    """``"<type>: <first line of the message>"``, cut to about ``limit`` characters."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        first = first[:limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_weights_only(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, map_location, weights_only=True)``, failures as one line.

    Args:
        path: the file.
        what: what the file should be, in words (e.g. ``"resume checkpoint"``).
        map_location: as ``torch.load``.

    Raises:
        InputError: ``"<path>: cannot read <what>: <problem>"`` when the file is missing,
            unreadable, truncated/corrupt, or refused by the weights-only unpickler.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, f"is a directory, expected a {what} file") from None
    except PermissionError as exc:
        raise InputError(path, f"cannot read {what} ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(path, f"cannot read {what}: {torch_load_problem(exc)}") from None
