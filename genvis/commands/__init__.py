"""One module per ``genvis`` sub-command: ``add_arguments(parser)`` and ``run(args) -> int``.

These modules only parse arguments and call the library; the work lives in the stage
packages (``genvis.data``, ``genvis.detector``, ``genvis.cache``, ``genvis.train``, ...).
"""

import argparse


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
    from genvis.errors import ConfigError

    if args.threads < 1:
        raise ConfigError("--threads", f"must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
