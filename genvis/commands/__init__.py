"""One module per ``genvis`` sub-command: ``add_arguments(parser)`` and ``run(args) -> int``.

These modules only parse arguments and call the library; the work lives in the stage
packages (``genvis.data``, ``genvis.detector``, ``genvis.cache``, ``genvis.train``, ...).
"""

import argparse
import os
from pathlib import Path

from genvis.errors import ConfigError

#: argument names (``dest``) that name something a command writes; every other argument
#: naming an existing file or folder is one of its inputs (:func:`check_output_paths`)
OUTPUT_ARGS = ("out", "out_dir", "zip", "plot", "table", "eval_out", "out_train", "out_holdout")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (torch CPU threads) to a sub-command's parser."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is fastest for small "
                        "models on a busy machine)")


def add_device_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--device`` (torch device of ``what``; default cpu) to a sub-command's parser."""
    parser.add_argument("--device", default="cpu",
                        help=f"torch device of {what}: cpu, cuda or cuda:N (default cpu)")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers N`` and ``--scheduler ADDRESS`` (videos as tasks on a dask cluster,
    :mod:`genvis.cluster`) to a sub-command's parser."""
    parser.add_argument("--workers", type=int, default=None,
                        help="run the videos as tasks on a local dask cluster of N worker processes "
                        "(each loads the model once; torch threads per worker: --threads, default 1)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running dask scheduler (e.g. tcp://host:8786: a SLURMCluster "
                        "or LocalCUDACluster) to run the videos on instead")


def check_device(args: argparse.Namespace) -> None:
    """Raise InputError (naming ``--device``) unless ``args.device`` is usable here
    (:func:`genvis.utils.device.resolve_device`)."""
    from genvis.utils.device import resolve_device

    resolve_device(args.device)


def apply_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` with ``torch.set_num_threads`` when given.

    Raises:
        ConfigError: ``--threads`` is below 1.
    """
    if args.threads is None:
        return
    if args.threads < 1:
        raise ConfigError("--threads", f"must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)


def _paths(value) -> list[Path]:
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _paths(v)]
    return []


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, an output path that is one of the inputs
    or that cannot be written.

    Outputs are the arguments named in :data:`OUTPUT_ARGS`; inputs are all other arguments
    whose value (or list of values) names an existing file (an input folder may also be
    an output folder: commands add files to it, e.g. ``report --base-dir D --out-dir D``). The CLI calls this
    for every sub-command (:func:`genvis.cli.main`), so e.g. ``evaluate --out GT.json`` or
    ``infer --out ANNOTATIONS.json`` stop with one line and the input is untouched.

    Raises:
        ConfigError: an output is the same file as an input (``os.path.samefile``,
            so links and ``./`` spellings count), two outputs are the same path, or the
            folder an output would be written in (its nearest existing ancestor) is not
            writable by this process.
    """
    outputs = [(name, p) for name in OUTPUT_ARGS for p in _paths(getattr(args, name, None))]
    inputs = [(name, p) for name, value in vars(args).items()
              if name not in OUTPUT_ARGS and not name.startswith("_") for p in _paths(value) if p.is_file()]
    for oname, out in outputs:
        flag = "--" + oname.replace("_", "-")
        if out.exists():
            for iname, inp in inputs:
                if _same(out, inp):
                    raise ConfigError(flag, f"{out} is also the input --{iname.replace('_', '-')}; "
                                      "writing it would destroy the input (choose another path)")
        folder = out if out.is_dir() else out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(flag, f"cannot write {out}: folder {folder} is not writable")
    for k, (aname, a) in enumerate(outputs):
        for bname, b in outputs[k + 1:]:
            if a.resolve() == b.resolve():
                raise ConfigError("--" + bname.replace("_", "-"), f"{b} is also the output "
                                  f"--{aname.replace('_', '-')}; give them different paths")


def wants_cluster(workers: int | None, scheduler: str | None) -> bool:
    """Whether the options ask for a dask cluster.

    Raises:
        ConfigError: ``--workers`` below 1, or both options given.
    """
    if workers is not None and workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    if workers is not None and scheduler:
        raise ConfigError("--scheduler", "give either --workers (a local cluster) or --scheduler, not both")
    return workers is not None or bool(scheduler)
