"""Ablation tables (markdown + CSV) and plots (Fig. 3) built from ``metrics.json`` files.

- ``spec``: the report specification (which metrics file feeds which table row or plot
  point), loaded from YAML/JSON and validated with a JSON schema.
- ``metrics``: reading one ``metrics.json`` written by ``genvis evaluate``.
- ``tables``: tables such as Table 4 (N_v / CL / UVLA / IPM columns), Table 5, Table 6, as
  markdown and CSV.
- ``figures``: metric-against-x series such as Fig. 3 (AP against N_f^eval for the
  online and semi-online models) as a PNG (matplotlib, Agg) plus their data table.
- ``build``: writes every table and figure of a spec into one folder with a ``report.md``.
"""
