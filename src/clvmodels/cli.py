"""The ``clvmodels`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clvmodels.exceptions import ClvModelsError, ParameterError


def parse_parameter(name: str, text: str, default: Any) -> Any:
    """A ``-p NAME VALUE`` value read as the type of the parameter's default in the template.

    Text parameters take the value exactly as typed (``"Q3: review"`` stays text, ``2017-07-01``
    stays a date string); numbers must parse as numbers (``1e3`` is 1000); mappings and lists
    are read as YAML/JSON (``{Platinum: 0.1, ...}``); booleans accept true/false/yes/no/1/0.
    """
    import yaml

    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ParameterError(f"Parameter {name!r} is true or false, got {text!r}.")
    if isinstance(default, (int, float)):
        try:
            value = float(text)
        except ValueError:
            raise ParameterError(f"Parameter {name!r} is a number, got {text!r}.") from None
        if isinstance(default, int) and value.is_integer():
            return int(value)
        return value
    if isinstance(default, (dict, list)):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ParameterError(f"Parameter {name!r} must be a {type(default).__name__} in YAML or JSON, "
                                 f"got {text!r} ({str(exc).splitlines()[0]}).") from None
        if not isinstance(value, type(default)):
            raise ParameterError(f"Parameter {name!r} must be a {type(default).__name__}, e.g. {default!r}; got {text!r}.")
        return value
    return text


def parse_settings(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--spark-conf``) as a mapping."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--spark-conf takes KEY=VALUE, e.g. spark.executor.memory=8g; got {item!r}.")
        settings[key.strip()] = value.strip()
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clvmodels", description="Customer lifetime value reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report", help="run a report template into a new folder under --output",
        description="Run a report template with papermill and publish HTML, tables and models into a "
                    "new folder under --output.")
    rep.add_argument("--input", help="transaction log (CSV or Parquet); default: bundled CDNOW data")
    rep.add_argument("--dataset", choices=["cdnow-sample", "cdnow-master"], help="bundled data to use without --input")
    rep.add_argument("--customer-col", help="column of customer ids")
    rep.add_argument("--date-col", help="column of purchase dates")
    rep.add_argument("--amount-col", help="column of purchase values")
    rep.add_argument("--date-format", help="strptime format of text dates, e.g. %%d/%%m/%%Y (default: ISO dates)")
    rep.add_argument("--refunds", choices=["error", "drop", "net"],
                     help="negative amounts: error (default), drop them, or net them against the same day")
    rep.add_argument("--currency", help="label for money amounts in the report, e.g. USD")
    rep.add_argument("--engine", choices=["duckdb", "spark"],
                     help="where the log is read and aggregated: duckdb (default, this machine) or spark")
    rep.add_argument("--table", help="with --engine spark: a table of the Spark catalog (db.table) instead of --input")
    rep.add_argument("--spark-master", help="with --engine spark: spark://host:7077, yarn, local[4] ... "
                                            "(default: $SPARK_MASTER, else local[*])")
    rep.add_argument("--spark-conf", action="append", metavar="KEY=VALUE", default=[],
                     help="with --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable)")
    rep.add_argument("--template", default="clv_report",
                     help="clv_report, model_validation or explore (installed with clvmodels), or the path "
                          "of a notebook - a path RUNS THAT NOTEBOOK'S CODE: only give templates you trust")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="set a template parameter; the value is read as the parameter's type "
                          "(text as typed, numbers, YAML for mappings)")
    rep.add_argument("--output", default="reports", help="folder that receives the report folder")
    rep.add_argument("--no-progress", action="store_true", help="hide the cell progress bar")
    args = parser.parse_args(argv)

    try:
        from clvmodels.reporting import run_report, template_parameters

        params: dict[str, Any] = {}
        for flag, name in (("input", "input_path"), ("dataset", "dataset"), ("customer_col", "customer_col"),
                           ("date_col", "date_col"), ("amount_col", "amount_col"), ("date_format", "date_format"),
                           ("refunds", "refunds"), ("currency", "currency"), ("engine", "engine"),
                           ("table", "input_table"), ("spark_master", "spark_master")):
            value = getattr(args, flag)
            if value is not None:
                params[name] = value
        if args.spark_conf:
            params["spark_conf"] = parse_settings(args.spark_conf)
        if args.parameter:
            defaults = template_parameters(args.template)
            for name, text in args.parameter:
                if name not in defaults:
                    raise ParameterError(f"Unknown parameter {name!r}; the template takes {sorted(defaults)}.")
                params[name] = parse_parameter(name, text, defaults[name])
        folder = run_report(args.template, params, args.output, progress=not args.no_progress)
    except ClvModelsError as exc:
        print(f"clvmodels: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clvmodels: interrupted; no report was published.", file=sys.stderr)
        return 130
    print(folder / "report.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
