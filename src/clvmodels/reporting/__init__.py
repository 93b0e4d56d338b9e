"""Parameterised report runs: validate parameters, execute a notebook template with papermill,
export offline HTML without code, and publish everything atomically into ``reports/``.

The parts, each in its own file: :mod:`.config` (the parameters), :mod:`.content` (the text and
tables of the report), :mod:`.files` (the files a run writes) and :mod:`.runner` (the papermill
runner with publishing and cleanup). Every name stays importable from ``clvmodels.reporting``.
"""

from __future__ import annotations

from clvmodels.reporting import config, content, files, runner, subscription

# one namespace for templates, scripts and the command line (private helpers included, which the
# command line and pipeline share)
for _module in (config, files, content, runner, subscription):
    globals().update({k: v for k, v in vars(_module).items()
                      if not k.startswith("__") and k not in ("annotations",)})
del _module

__all__ = [
    "ReportConfig",
    "validate_parameters",
    "parameters_from",
    "load_report_transactions",
    "report_source",
    "save_artifacts",
    "executive_summary",
    "run_report",
    "template_path",
    "template_parameters",
    "clean_stale_runs",
    "format_tier_table",
    "format_what_if",
    "format_selection",
    "format_scorecard",
    "format_backtest_tiers",
    "format_deciles",
    "format_at_risk",
    "md_escape",
    "report_heading",
    "model_paragraph",
    "backtest_reading",
    "data_overview",
    "DATASETS",
]

