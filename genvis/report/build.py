"""Write every table and figure of a report spec into one folder.

For a table ``NAME``: ``NAME.md`` and ``NAME.csv``. For a figure ``NAME``: ``NAME.png``,
plus its data as ``NAME.md`` and ``NAME.csv``. ``report.md`` gathers all tables and
figures. Every metrics file is read and checked before the first file is written, so bad
input leaves the folder untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

from genvis.report.figures import build_series, plot_series, series_table
from genvis.report.spec import ReportSpec
from genvis.report.tables import build_table, to_csv, to_markdown
from genvis.utils.io import atomic_write_text


def write_report(spec: ReportSpec, out_dir: str | os.PathLike) -> list[Path]:
    """Write the report's files into ``out_dir`` (created if needed).

    Returns:
        The paths written, ``report.md`` last.

    Raises:
        InputError: a metrics file is missing or malformed, or lacks a metric the spec asks
            for; nothing is written then.
    """
    out = Path(out_dir)
    tables = [(t.name, build_table(t)) for t in spec.tables]
    figures = []
    for f in spec.figures:
        series = build_series(f)
        figures.append((f, series, series_table(f, series)))

    written: list[Path] = []
    sections = [f"# {spec.title}", ""]
    for name, table in tables:
        md = to_markdown(table)
        atomic_write_text(out / f"{name}.md", md)
        atomic_write_text(out / f"{name}.csv", to_csv(table))
        written += [out / f"{name}.md", out / f"{name}.csv"]
        sections += [md]
    for f, series, table in figures:
        png = out / f"{f.name}.png"
        plot_series(f, series, png)
        md = to_markdown(table)
        atomic_write_text(out / f"{f.name}.md", md)
        atomic_write_text(out / f"{f.name}.csv", to_csv(table))
        written += [png, out / f"{f.name}.md", out / f"{f.name}.csv"]
        sections += [md, f"![{f.title}]({f.name}.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(sections))
    written.append(out / "report.md")
    return written
