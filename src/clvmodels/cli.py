"""The ``clvmodels`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from clvmodels.exceptions import ClvModelsError


def _parse_value(text: str) -> Any:
    """Parameter values are YAML, as papermill's own -p: numbers, true/false, lists, dicts."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clvmodels", description="Customer lifetime value reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="run a report template into a new folder under --output")
    rep.add_argument("--input", help="transaction log (CSV or Parquet); default: bundled CDNOW data")
    rep.add_argument("--dataset", choices=["cdnow-sample", "cdnow-master"], help="bundled data to use without --input")
    rep.add_argument("--customer-col", help="column of customer ids")
    rep.add_argument("--date-col", help="column of purchase dates")
    rep.add_argument("--amount-col", help="column of purchase values")
    rep.add_argument("--template", default="clv_report", help="clv_report, model_validation, explore or a path")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="set a template parameter (value parsed as YAML)")
    rep.add_argument("--output", default="reports", help="folder that receives the report folder")
    rep.add_argument("--no-progress", action="store_true", help="hide the cell progress bar")
    args = parser.parse_args(argv)

    from clvmodels.reporting import run_report

    params: dict[str, Any] = {}
    for flag, name in (("input", "input_path"), ("dataset", "dataset"), ("customer_col", "customer_col"),
                       ("date_col", "date_col"), ("amount_col", "amount_col")):
        value = getattr(args, flag)
        if value is not None:
            params[name] = value
    for name, value in args.parameter:
        params[name] = _parse_value(value)
    try:
        folder = run_report(args.template, params, args.output, progress=not args.no_progress)
    except ClvModelsError as exc:
        print(f"clvmodels: error: {exc}", file=sys.stderr)
        return 1
    print(folder / "report.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
