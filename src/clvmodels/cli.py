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


#: the purchase models ``clvmodels score --model`` fits (models.registry, whose keys they are)
_MODELS = ("bgnbd", "mbgnbd", "paretonbd")


def score(args: argparse.Namespace) -> Any:
    """The ``score`` command: models and settings, then :func:`clvmodels.scoring.score_customers`."""
    import json
    import os
    import tempfile
    from pathlib import Path

    import clvmodels
    from clvmodels.engine import engine_named  # (imports here: the command line starts fast)
    from clvmodels.models.registry import load_model, model_class
    from clvmodels.scoring import compressed_rfm, score_customers

    out = Path(args.output)
    if os.path.lexists(out):
        raise ParameterError(f"--output {str(out)!r} already exists; give a new folder.")
    check_output_folder(out, "--output")
    settings: dict[str, Any] = {"horizon": 52.0, "discount_rate": 0.10, "margin": 0.30, "cost_to_serve": 0.0,
                                "time_unit": None, "tier_shares": None}
    models = None
    if args.models:
        folder = Path(args.models)
        models = (load_model(folder / "purchase_model.json"), load_model(folder / "gamma_gamma.json"))
        if (folder / "parameters.json").exists():
            saved = json.loads((folder / "parameters.json").read_text())
            settings.update({k: saved[k] for k in settings if k in saved})
    for name in ("horizon", "discount_rate", "margin", "cost_to_serve", "time_unit"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    engine = args.engine or "duckdb"
    if args.engine_memory:
        from clvmodels.engine import set_engine_memory

        set_engine_memory(args.engine_memory)
    eng = engine_named(engine)
    if not eng.distributed and (args.table or args.spark_master or args.spark_conf):
        raise ParameterError("--table, --spark-master and --spark-conf need --engine spark.")
    if bool(args.table) == bool(args.input):
        raise ParameterError("Give the log with --input PATH (or, with --engine spark, --table NAME): exactly one.")
    eng.available()
    eng.start(args.spark_master or "", parse_settings(args.spark_conf))
    if args.table:
        source: Any = eng.catalog_table(args.table)
    else:
        source = args.input
    columns = {k: v for k, v in (("customer_id", args.customer_col), ("date", args.date_col),
                                 ("amount", args.amount_col)) if v}
    log = clvmodels.load_transactions(source, engine=engine, date_format=args.date_format,
                                      refunds=args.refunds or "error", **columns)
    unit = settings["time_unit"] or (models[0].time_unit_ if models else None) or "W"
    if models is None:
        stats = compressed_rfm(log, time_unit=unit, observation_end=args.observation_end)
        models = stats.fit(model_class(args.model)(), clvmodels.GammaGammaModel())
    from clvmodels import reporting

    # the same rules as a report: written in a hidden folder that records its owner, moved into
    # place with one rename when complete; a failure is kept as OUTPUT-FAILED with the reason,
    # a killed run's folder is removed by the next run
    out.parent.mkdir(parents=True, exist_ok=True)
    reporting.clean_stale_runs(out.parent)
    work = Path(tempfile.mkdtemp(prefix=".clvmodels-score-", suffix=".tmp", dir=out.parent))
    (work / reporting.OWNER_FILE).write_text(reporting.owner_record())
    try:
        result = score_customers(*models, log, work / "forecast.parquet", time_unit=unit,
                                 observation_end=args.observation_end, **{k: v for k, v in settings.items()
                                                                          if k != "time_unit"})
        reporting.write_csv(result.tier_table, work / "tier_table.csv")
        models[0].save(work / "purchase_model.json")
        models[1].save(work / "gamma_gamma.json")
        (work / reporting.OWNER_FILE).unlink()
        reporting.make_readable(work)
        if os.path.lexists(out):
            raise ParameterError(f"--output {str(out)!r} was created by another run while this one worked.")
        try:
            os.rename(work, out)
        except OSError as exc:
            raise ParameterError(f"--output {str(out)!r} could not be published: {exc.strerror}.") from None
    except BaseException as exc:
        reason = "interrupted (Ctrl-C or SIGINT)" if isinstance(exc, KeyboardInterrupt) else str(exc).splitlines()[0]
        kept = reporting.keep_failed(work, out.parent, out.name, reason)
        if isinstance(exc, ClvModelsError) and kept is not None:
            raise type(exc)(f"{exc} This run's files are kept in {kept}.") from None
        raise
    print(f"[clvmodels] {result.customers:,} customers scored ({result.distinct_histories:,} distinct purchase "
          f"histories evaluated here)", file=sys.stderr)
    return out


def _parameter_help() -> str:
    """Every parameter of the report templates with its default and its comment, for --help."""
    import json

    from clvmodels.reporting import template_path

    lines = []
    for template, kind in (("clv_report", "--kind transactions"), ("subscription_report", "--kind subscription")):
        try:
            nb = json.loads(template_path(template).read_text())
            cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        except Exception:  # noqa: BLE001 - help text must never fail
            continue
        lines += ["", f"template parameters of {template} ({kind}; set with -p NAME VALUE; default, then meaning):"]
        for line in "".join(cell["source"]).splitlines():
            if "=" not in line or line.lstrip().startswith("#"):
                continue
            assign, _, comment = line.partition("#")
            name, _, default = assign.partition("=")
            lines.append(f"  {name.strip():<18} {default.strip():<24} {comment.strip()}")
    return "\n".join(lines).lstrip("\n")


def parse_settings(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--spark-conf``) as a mapping."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--spark-conf takes KEY=VALUE, e.g. spark.executor.memory=8g; got {item!r}.")
        settings[key.strip()] = value.strip()
    return settings


def _source_arguments(p: argparse.ArgumentParser) -> None:
    """Where the log is and how to read it: the same flags for every command."""
    p.add_argument("--input", help="transaction log: CSV or Parquet file, or a folder of Parquet files "
                                    "(report: default the bundled CDNOW data)")
    p.add_argument("--customer-col", help="column of customer ids")
    p.add_argument("--date-col", help="column of purchase dates")
    p.add_argument("--amount-col", help="column of purchase values")
    p.add_argument("--date-format", help="strptime format of text dates, e.g. %%d/%%m/%%Y (default: ISO dates)")
    p.add_argument("--refunds", choices=["error", "drop", "net"],
                   help="negative amounts: error (default), drop them, or net them against the same day")
    p.add_argument("--engine", choices=["duckdb", "spark"],
                   help="where the log is read and aggregated: duckdb (default, this machine) or spark")
    p.add_argument("--table", help="with --engine spark: a table of the Spark catalog (db.table) instead of --input")
    p.add_argument("--spark-master", help="with --engine spark: spark://host:7077, yarn, local[4] ... "
                                          "(default: $SPARK_MASTER, else local[*])")
    p.add_argument("--spark-conf", action="append", metavar="KEY=VALUE", default=[],
                   help="with --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable)")
    p.add_argument("--engine-memory", metavar="SIZE",
                   help="memory the embedded DuckDB may use, e.g. 4GB or 25%% (beyond it, it spills to a temporary "
                        "folder); default 25%% of the machine or $CLVMODELS_ENGINE_MEMORY")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clvmodels", description="Customer lifetime value reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report", help="run a report template into a new folder under --output",
        description="Run a report template with papermill and publish HTML, tables and models into a "
                    "new folder under --output.",
        epilog=_parameter_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("--dataset", choices=["cdnow-sample", "cdnow-master"], help="bundled data to use without --input")
    rep.add_argument("--currency", help="label for money amounts in the report, e.g. USD")
    rep.add_argument("--previous", metavar="REPORT_FOLDER",
                     help="an earlier report folder to compare with (since the last run); default: the latest "
                          "earlier run of the same title in --output; 'none' for no comparison")
    _source_arguments(rep)
    rep.add_argument("--customers", metavar="CUSTOMERS_FILE",
                     help="a customer table (CSV or Parquet, one row per customer, joined on the customer id): "
                          "with -p covariates [channel, region] the report measures their effects, with "
                          "-p segment_col region it summarises the forecast per segment")
    rep.add_argument("--events", metavar="EVENTS_FILE",
                     help="calendar events (CSV or Parquet: a date column and one column per event, e.g. holiday 1 "
                          "on holidays; list the forecast horizon's days too): the seasonal models learn each "
                          "event's effect on the purchase rate and forecast with it")
    rep.add_argument("--kind", choices=["transactions", "subscription"], default="transactions",
                     help="transactions (default): a purchase log (customer, date, amount); subscription: a "
                          "subscription log, one row per subscriber (customer, start, end - empty while active - "
                          "and amount per period), reported with the subscription_report template")
    rep.add_argument("--start-col", help="with --kind subscription: column of start dates (default start)")
    rep.add_argument("--end-col", help="with --kind subscription: column of end dates, empty while active (default end)")
    rep.add_argument("--period", choices=["week", "month", "quarter", "year"],
                     help="with --kind subscription: the renewal period (default month)")
    rep.add_argument("--template", default=None,
                     help="clv_report (default), subscription_report, model_validation or explore (installed with "
                          "clvmodels), or the path of a notebook - a path RUNS THAT NOTEBOOK'S CODE: only give "
                          "templates you trust")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="set a template parameter; the value is read as the parameter's type "
                          "(text as typed, numbers, YAML for mappings)")
    rep.add_argument("--output", default="reports", help="folder that receives the report folder")
    rep.add_argument("--no-progress", action="store_true", help="hide the cell progress bar")
    rep.add_argument("--kernel", action="store_true",
                     help="run the notebook in a Jupyter kernel (a process of its own) instead of this process: "
                          "2-3 s slower; the executed notebook is the same")
    sc = sub.add_parser(
        "score", help="forecast and tier every customer inside the engine (for logs whose customer "
                      "table does not fit in memory)",
        description="Forecast and tier every customer of a log inside DuckDB or Spark and write a Parquet "
                    "dataset partitioned by tier into a new folder --output, with the tier table and the "
                    "models. Models come from a report folder (--models) or are fitted on the distinct "
                    "purchase histories (--model).")
    _source_arguments(sc)
    sc.add_argument("--models", help="a report folder: use its purchase_model.json, gamma_gamma.json and settings")
    sc.add_argument("--model", choices=sorted(_MODELS), default="paretonbd",
                    help="without --models: the purchase model to fit (default paretonbd)")
    sc.add_argument("--output", required=True, help="new folder for forecast.parquet/, tier_table.csv and the models")
    sc.add_argument("--time-unit", choices=["W", "D"], help="unit of horizon (default: the models', else W)")
    sc.add_argument("--horizon", type=float, help="forecast horizon in time units (default: the report's, else 52)")
    sc.add_argument("--discount-rate", type=float, help="annual discount rate (default: the report's, else 0.10)")
    sc.add_argument("--margin", type=float, help="share of revenue that is profit (default: the report's, else 0.30)")
    sc.add_argument("--cost-to-serve", type=float, help="cost per customer per time unit while active")
    sc.add_argument("--observation-end", help="last day of data used (default: the last purchase)")
    args = parser.parse_args(argv)
    import logging

    # nbclient's kernel tasks that end with the kernel (Ctrl-C, a killed kernel) are reported by
    # asyncio's logger as "Task exception was never retrieved" with a traceback; the run's own
    # error message already says what happened
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if args.command == "score":
        from pathlib import Path

        return _guarded(lambda: score(args), "nothing was published", Path(args.output).parent)
    return _guarded(lambda: report(args) / "report.html", "no report was published", args.output)


def _guarded(action: Any, unpublished: str, log_folder: Any = None) -> int:
    """Run a command: print what it made; errors as one line (exit 1), Ctrl-C as exit 130.

    No Python traceback reaches the terminal: an error clvmodels did not foresee (a file system
    or engine error) is said in one line, and its full traceback is written to a log file in
    ``log_folder`` (else the system's temporary folder) whose path the line gives."""
    try:
        made = action()
    except ClvModelsError as exc:
        print(f"clvmodels: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clvmodels: interrupted; {unpublished}.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line run
        log = _write_traceback(log_folder)
        if isinstance(exc, OSError):
            import errno

            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            hint = {errno.ENOSPC: " - the disk is full", errno.EDQUOT: " - the disk quota is used up",
                    errno.EROFS: " - read-only file system", errno.EACCES: " - no permission to write there"
                    }.get(exc.errno, "")
            what = f"{exc.strerror or exc}{where}{hint}"
        else:
            what = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"clvmodels: error: {what}; {unpublished}. Full traceback: {log}", file=sys.stderr)
        return 1
    print(made)
    return 0


def _write_traceback(folder: Any) -> str:
    """The current exception's traceback in a new log file; its path (or why there is none)."""
    import datetime as dt
    import os
    import tempfile
    import traceback
    from pathlib import Path

    text = traceback.format_exc()
    name = f"clvmodels-error-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for place in (folder, tempfile.gettempdir()):
        if place is None:
            continue
        try:
            path = Path(place) / name
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "not written (no writable folder)"


def report(args: argparse.Namespace) -> Any:
    """The ``report`` command: parameters from the flags, then :func:`clvmodels.reporting.run_report`."""

    if args.kind == "subscription":
        return _subscription_report(args)
    for flag in ("start_col", "end_col", "period"):
        if getattr(args, flag) is not None:
            raise ParameterError(f"--{flag.replace('_', '-')} is for --kind subscription; a transaction log has "
                                 "--customer-col, --date-col and --amount-col.")
    args.template = args.template or "clv_report"
    params: dict[str, Any] = {}
    for flag, name in (("input", "input_path"), ("dataset", "dataset"), ("customer_col", "customer_col"),
                       ("date_col", "date_col"), ("amount_col", "amount_col"), ("date_format", "date_format"),
                       ("refunds", "refunds"), ("currency", "currency"), ("engine", "engine"),
                       ("table", "input_table"), ("spark_master", "spark_master"), ("previous", "previous"),
                       ("customers", "customers_path"), ("engine_memory", "engine_memory"),
                       ("events", "events_path")):
        value = getattr(args, flag)
        if value is not None:
            params[name] = value
    if args.spark_conf:
        params["spark_conf"] = parse_settings(args.spark_conf)
    return _run_template(args, args.template, params)


def _run_template(args: argparse.Namespace, template: str, params: dict[str, Any]) -> Any:
    """The ``-p NAME VALUE`` parameters read as the template's types on top of ``params``, the
    output folder checked, then the template run."""
    from clvmodels.reporting import run_report, template_parameters

    if args.parameter:
        defaults = template_parameters(template)
        for name, text in args.parameter:
            if name not in defaults:
                raise ParameterError(f"Unknown parameter {name!r}; the template takes {sorted(defaults)}.")
            params[name] = parse_parameter(name, text, defaults[name])
    check_output_folder(args.output, "--output")
    # the command line's process does nothing else: the cells run in it unless --kernel
    return run_report(template, params, args.output, progress=not args.no_progress, in_process=not args.kernel)


def _subscription_report(args: argparse.Namespace) -> Any:
    """``report --kind subscription``: the subscription_report template on a subscription log."""

    template = args.template or "subscription_report"
    wrong = [f"--{flag.replace('_', '-')}" for flag in ("dataset", "date_col", "date_format", "refunds", "engine",
                                                        "table", "spark_master", "customers", "engine_memory", "events")
             if getattr(args, flag) is not None] + (["--spark-conf"] if args.spark_conf else [])
    if wrong:
        raise ParameterError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for transaction logs; "
                             "--kind subscription reads a subscription "
                             "log with --input, --customer-col, --start-col, --end-col, --amount-col and --period.")
    params: dict[str, Any] = {}
    for flag, name in (("input", "input_path"), ("customer_col", "customer_col"), ("start_col", "start_col"),
                       ("end_col", "end_col"), ("amount_col", "amount_col"), ("period", "period"),
                       ("currency", "currency"), ("previous", "previous")):
        if getattr(args, flag) is not None:
            params[name] = getattr(args, flag)
    return _run_template(args, template, params)


def check_output_folder(folder: Any, flag: str) -> None:
    """Refuse, before any work, an output folder that cannot be written: one under a file, or
    on a read-only, full or forbidden file system (found by writing a small file there).
    The message names ``flag``, the path, what is wrong and what to do."""
    import errno
    import os
    import tempfile
    from pathlib import Path

    path = Path(folder)
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        what = "is a file" if existing.exists() else "is a broken link"
        where = "" if existing == path else f": {str(existing)!r} {what}, not a folder"
        raise ParameterError(f"{flag} {str(path)!r} cannot be an output folder{where or ' (it ' + what + ')'}; "
                             "give a folder (new or existing) or a path under one.")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".clvmodels-write-check-"):
            pass
    except OSError as exc:
        hint = {errno.ENOSPC: "the disk is full: free space or choose another folder",
                errno.EDQUOT: "the disk quota is used up: free space or choose another folder",
                errno.EROFS: "the file system is read-only: choose a folder you can write to",
                errno.EACCES: "permission denied: choose a folder you can write to",
                errno.EPERM: "not permitted: choose a folder you can write to"}.get(
            exc.errno, f"{exc.strerror or exc}: choose another folder")
        raise ParameterError(f"{flag} {str(path)!r} cannot be written ({str(existing)!r}: {hint}).") from None


def run() -> None:
    """The console script (and ``python -m clvmodels.cli``): :func:`main` (without a parser of
    RFC 3987 it would not use), then out of the process without tearing its modules down one by
    one - 0.4-0.7 s after a report (numpy, scikit-learn, IPython ...), for nothing: the process ends. What must happen at exit still
    does: threads that are not daemons are waited for, the ``atexit`` handlers run (DuckDB's
    close and spill folder, temporary folders, Spark's gateway, logging) and the output is
    flushed."""
    import atexit
    import os
    import threading

    # jsonschema (nbformat's) compiles 38 parsers of RFC 3987 when it is imported if the optional
    # rfc3987-syntax is installed (JupyterLab brings it, through jupyter-events): 1-1.7 s of a
    # report, for the "iri" string formats no notebook uses. Not in this process.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    code = main()
    try:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()  # noqa: SLF001 - what interpreter shutdown would run first
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - e.g. a second Ctrl-C: the ordinary, slower exit
        raise SystemExit(code) from None
    os._exit(code)


if __name__ == "__main__":
    run()
