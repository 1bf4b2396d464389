"""The torch device a job runs on (``--device`` of every command that runs a model).

The detector (``train-detector``, ``extract``, ``demo``) and the stage-two video modules
(``train``, ``infer``) accept ``cpu``, ``cuda`` or ``cuda:N``. Data is always read on the
CPU and moved to the device; random draws that decide what is sampled stay on the CPU, so
a run samples the same clips and points on any device.
"""

from __future__ import annotations

import torch

from genvis.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`.

    Raises:
        InputError: (naming ``--device``) not a torch device string, or CUDA requested on a
            machine without it.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError("--device", f"not a torch device: {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"{str(device)!r} requested but CUDA is not available on this machine")
    return dev
