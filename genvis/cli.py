"""The ``genvis`` command line: the one entry point the Snakemake workflow calls.

Each sub-command lives in its own module under ``genvis.commands`` and provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
sub-command runs, so ``genvis --help`` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings

from genvis import __version__
from genvis.errors import GenvisError, InputWarning

# (sub-command, module under genvis.commands, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("synth", "synth", "write a synthetic OVIS-style occlusion benchmark (frames + json)"),
    ("import-davis", "import_davis", "convert a DAVIS-layout dataset to YouTube-VIS json"),
    ("split", "split", "split a VIS json by video into train and held-out parts (local scoring)"),
    ("augment", "augment", "write randomly flipped and cropped views of a training split (before stage one)"),
    ("evaluate", "evaluate", "score YouTube-VIS results json against ground truth (video AP/AR, HOTA/AssA/IDF1)"),
    ("compare", "compare", "method A vs B over training seeds: seed-mean video AP, paired video bootstrap"),
    ("diagnose", "diagnose", "the same methods under several inter-clip associations: video and frame AP"),
    ("train-detector", "train_detector", "train the Mask2Former frame detector on a dataset's frames"),
    ("detector-ap", "detector_ap", "frame-level mask AP of a trained frame detector on a split"),
    ("import-checkpoint", "import_checkpoint", "convert an official Mask2Former/VITA/GenVIS detector checkpoint"),
    ("extract", "extract", "stage one: run the frozen detector and write the Zarr feature cache"),
    ("train", "train", "stage two: train the GenVIS video modules from the cache"),
    ("infer", "infer", "stage two: clip-by-clip inference from the cache, YouTube-VIS results json"),
    ("demo", "demo", "run detector + GenVIS on a video file or frame folder, write results and overlay"),
    ("report", "report", "write ablation tables (markdown, CSV) and plots from metrics files"),
    ("seed-table", "seed_table", "mean ± std over training seeds of rows of metrics files (markdown, CSV)"),
    ("visualize", "visualize", "draw a results json's tracks beside the ground truth of some videos (PNG, mp4)"),
]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with one sub-parser per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(prog="genvis", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"genvis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily in main() once the command is known.
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``genvis`` CLI. Returns the process exit code (0 on success, 2 on bad input).

    Run as the program (``argv`` None), the process also ends when its parent process dies
    (Linux, :func:`genvis.utils.process.die_with_parent`), so a hard-killed workflow leaves
    no orphan jobs.
    """
    if argv is None:
        from genvis.utils.process import die_with_parent

        die_with_parent()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    names = {name: module for name, module, _ in COMMANDS}
    if not argv or argv[0] not in names:
        args = parser.parse_args(argv)  # prints help / version / error
        if args.command is None:
            parser.print_help()
            return 1
    name = argv[0]
    module = importlib.import_module(f"genvis.commands.{names[name]}")
    help_text = next(h for n, _, h in COMMANDS if n == name)
    sub = argparse.ArgumentParser(prog=f"genvis {name}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(name, warnings.showwarning)
        try:
            from genvis.commands import check_output_paths

            check_output_paths(args)
            return int(module.run(args) or 0)
        except GenvisError as exc:
            _error(name, str(exc))
            return 2
        except OSError as exc:
            # the operating system refused (read-only or full disk, permission): one line
            # naming the path, as for bad input; nothing is half-written (atomic writes)
            where = exc.filename if exc.filename is not None else ""
            _error(name, f"{where}{': ' if where else ''}{exc.strerror or exc}")
            return 2


def _error(name: str, message: str) -> None:
    """Print one error line (a message with line breaks is joined on one line)."""
    print(f"genvis {name}: error: " + " ".join(message.split()), file=sys.stderr)


def _one_line_warnings(name: str, default):
    """A ``warnings.showwarning`` that prints :class:`InputWarning` as one line
    ``genvis NAME: warning: ...`` and leaves other warnings to ``default``."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            with contextlib.suppress(OSError):
                print(f"genvis {name}: warning: " + " ".join(str(message).split()), file=file or sys.stderr)
            return
        default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
