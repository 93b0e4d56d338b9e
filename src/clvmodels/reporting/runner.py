"""Running a template: papermill execution in a hidden run folder, offline HTML export, atomic
publishing, failed runs kept, stale runs of dead processes cleaned."""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import io
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from clvmodels._text import slug
from clvmodels._version import __version__
from clvmodels.exceptions import ParameterError, ReportError
from clvmodels.reporting.config import TEMPLATES, ReportConfig, preflight_input, validate_parameters
from clvmodels.transactions import is_remote


def template_path(name_or_path: str | os.PathLike | None) -> Path:
    """A template by name (``clv_report``, ``model_validation``, ``explore``) or by path.

    Names resolve only to the templates installed with clvmodels, never to a file of the same
    name in the current folder: a stray ``notebooks/clv_report.ipynb`` is not run in place of
    the real one. A path runs that notebook's code as it is - only pass templates you trust.
    """
    if name_or_path is None:
        name_or_path = "clv_report"
    if str(name_or_path) in TEMPLATES:
        candidate = Path(str(resources.files("clvmodels") / "templates" / TEMPLATES[str(name_or_path)]))
        if candidate.exists():
            return candidate
        raise ReportError(f"The installed template {name_or_path!r} is missing ({candidate}); reinstall clvmodels.")
    path = Path(name_or_path)
    if not path.exists():
        raise ParameterError(
            f"Template {str(path)!r} does not exist; give one of {sorted(TEMPLATES)} or the path of a notebook."
        )
    return path


def _template_defaults(path: Path) -> dict[str, Any]:
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    defaults = {}
    for name, info in declared.items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = info["default"]
    return defaults


def template_parameters(template: str | os.PathLike | None = None) -> dict[str, Any]:
    """The parameters a template declares, with their default values."""
    return _template_defaults(template_path(template))


_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #1f2d3d;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { border-bottom: 3px solid #1f2d3d; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccd; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border-bottom: 1px solid #dde; padding: 4px 10px; text-align: right; }
th { background: #f3f5f8; white-space: nowrap; }
td { white-space: nowrap; }
img { max-width: 100%; height: auto; }
/* wide tables scroll in their own box instead of widening the page; a shadow at an edge says
   there is more that way (scroll shadows: the white covers move with the content, the shadows stay) */
.jp-OutputArea-output, .output_html { overflow-x: auto; max-width: 100%;
  background: linear-gradient(to right, #fff 30%, rgba(255,255,255,0)) left / 40px 100% no-repeat local,
              linear-gradient(to left, #fff 30%, rgba(255,255,255,0)) right / 40px 100% no-repeat local,
              radial-gradient(farthest-side at 0 50%, rgba(0,0,0,.22), transparent) left / 14px 100% no-repeat scroll,
              radial-gradient(farthest-side at 100% 50%, rgba(0,0,0,.22), transparent) right / 14px 100% no-repeat scroll; }
/* the id column (a table's row labels) stays in view while the rest scrolls */
.jp-OutputArea-output tbody th, .jp-OutputArea-output thead th:first-child { position: sticky; left: 0; z-index: 1; }
.jp-OutputArea-output img { display: block; margin: .5em auto; }
table.sortable th { cursor: pointer; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 1em 0; }
.tile { flex: 1 1 220px; border: 1px solid #d8dee8; border-radius: 8px; padding: 12px 16px; background: #f8fafc; }
.tile-label { font-size: 13px; color: #4a5568; }
.tile-big { font-size: 28px; font-weight: 600; margin: .15em 0; white-space: nowrap; }
.tile-small { font-size: 13px; color: #4a5568; }
.act { margin: .5em 0; padding: 8px 14px; border-left: 4px solid #c9a100; background: #fffbea; font-size: 15px; }
.pyramid { margin: 1.2em auto; max-width: 720px; }
.pyramid .band { margin: 4px auto; padding: 7px 6px; text-align: center; color: #fff; border-radius: 4px;
                 font-size: 14px; box-sizing: border-box; }
.band-platinum { background: #7f8c8d; } .band-gold { background: #c9a100; }
.band-iron { background: #5d6d7e; } .band-lead { background: #2c3e50; }
.assumptions table { font-size: 13px; } .assumptions caption { text-align: left; font-weight: 600; }
.assumptions th { text-align: left; background: none; } .assumptions td { text-align: left; }
.default { color: #9a5b00; font-style: italic; }
input.table-filter { margin: .4em 0; padding: 4px 8px; font-size: 14px; width: 18em; max-width: 90%; }
@media (max-width: 640px) {
  body { margin: 1em auto; padding: 0 .7em; font-size: 15px; }
  table { font-size: 12px; }
  th, td { padding: 3px 6px; }
}
@media print {
  body { max-width: none; margin: 0; }
  .jp-OutputArea-output, .output_html { overflow: visible; }
  table { font-size: 8px; page-break-inside: auto; }
  th, td { white-space: normal; padding: 2px 4px; }  /* wide tables wrap to the page, never cut */
  tr, img { page-break-inside: avoid; }
  input.table-filter { display: none; }
}
.jp-OutputArea-output pre, pre { background: #f7f7f9; padding: .5em; overflow-x: auto; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
footer { margin-top: 3em; color: #778; font-size: 12px; }
"""


#: the page's own script (inline, no external resource): tables marked "sortable" sort by a
#: click on a column heading, tables marked "filterable" get a box that hides rows without the
#: typed text; it reads cell text only and never inserts markup
_SCRIPT = """
(function () {
  function value(cell) {
    var t = cell.textContent.trim();
    var n = parseFloat(t.replace(/[^0-9.eE+-]/g, ''));
    return /^[^0-9-]*-?[0-9][0-9,]*(\\.[0-9]+)?%?$/.test(t.replace(/\\s/g, '')) && !isNaN(n) ? n : t.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead tr:last-child th');
    heads.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        rows.sort(function (a, b) {
          var x = value(a.cells[col]), y = value(b.cells[col]);
          if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }
          return typeof x === 'number' ? -1 : 1;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('table.filterable').forEach(function (table) {
    var box = document.createElement('input');
    box.type = 'search';
    box.className = 'table-filter';
    box.placeholder = 'Filter rows (customer, tier ...)';
    box.setAttribute('aria-label', 'Filter the rows of the table below');
    box.addEventListener('input', function () {
      var q = box.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
    table.parentNode.insertBefore(box, table);
  });
})();
"""


def _export_html(notebook_path: Path, html_path: Path, title: str = "Report") -> None:
    """Export without code (unless the notebook asks to show it) and without any external resource: nbconvert's ``basic`` template
    (body only; the full templates load require.js, MathJax and mermaid from CDNs) inside our
    own page with inline CSS; figures are already base64 PNG in the notebook."""
    import html as _html

    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    # a teaching notebook (metadata clvmodels.show_code, e.g. the explore template) keeps its code
    show_code = bool(nb.metadata.get("clvmodels", {}).get("show_code", False))
    body, _ = _exporter(show_code).from_notebook_node(nb)
    body = _strip_external(body)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_html.escape(title)}</title><style>{_STYLE}</style></head><body>\n{body}\n"
        f"<footer>Generated {stamp} by clvmodels {__version__}.</footer><script>{_SCRIPT}</script></body></html>\n"
    )
    html_path.write_text(page, encoding="utf-8")


def _exporter(show_code: bool) -> Any:
    """nbconvert's HTML exporter as the report uses it (:func:`_export_html`)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = {"hide", "parameters", "injected-parameters"}
    c.HTMLExporter.exclude_input = not show_code
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.anchor_link_text = ""  # no pilcrow after every heading
    return HTMLExporter(config=c, template_name="basic")


def _in_process_engine() -> str | None:
    """The name of papermill's engine for running cells in this process, registered; None
    inside an IPython or Jupyter session (see :mod:`clvmodels.reporting.inprocess`)."""
    from clvmodels.reporting import inprocess

    return inprocess.ENGINE_NAME if inprocess.available() else None


def _warm_exporter() -> None:
    """Import nbconvert and compile its templates (the first export in a process took 0.8 s after
    papermill's imports, 0.25 s warm; 2.7 s in a fresh process): run beside the notebook, while
    this process only waits for the kernel, so the export after it starts warm. A failure here is
    left to the export itself to report."""
    with contextlib.suppress(Exception):
        import nbformat

        _exporter(False).from_notebook_node(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("#")]))


def _warming() -> threading.Thread:
    """The exporter warmed in a background thread (see :func:`_warm_exporter`), started."""
    thread = threading.Thread(target=_warm_exporter, name="clvmodels-warm-export", daemon=True)
    thread.start()
    return thread


_EXTERNAL = re.compile(
    r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>|<link[^>]*\shref=[\"']https?://[^>]*>", re.I
)


def _strip_external(body: str) -> str:
    """Drop any script or stylesheet loaded from the network, so the file opens offline."""
    return _EXTERNAL.sub("", body)


def _cell_errors(nb: Any) -> list[str]:
    errors = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errors


def run_report(
    template: str | os.PathLike | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike = "reports",
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    in_process: bool = False,
) -> Path:
    """Run a report template and publish it as a new folder under ``output_dir``.

    Parameters are validated before any work (unknown names and bad values raise
    :class:`ParameterError`). The notebook runs with papermill in a temporary folder inside
    ``output_dir``; on success the HTML export (no code, figures embedded, no external URLs),
    the executed notebook, the forecast, tier table, models and parameters are moved into place
    with one rename, so a folder that exists is complete. On failure nothing that looks finished
    is left: the executed notebook is kept in a ``*-FAILED`` folder for debugging and
    :class:`ReportError` carries the failing cell's error.

    ``in_process=True`` runs the cells in this process instead of a Jupyter kernel (2-3 s
    less; what the command line does, see :mod:`clvmodels.reporting.inprocess`): for a process
    that does nothing else afterwards. Inside IPython or Jupyter a kernel is used regardless.

    Returns
    -------
    Path
        The new report folder (``<slug of title>-<timestamp>``); the HTML is ``report.html``.
    """
    import nbformat
    import papermill as pm

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = template_path(template)
    defaults = _template_defaults(path)
    given = dict(parameters or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ParameterError(f"Unknown parameter(s) {unknown} for template {path.name}; it takes {sorted(defaults)}.")
    merged = {**defaults, **given}
    if set(merged) <= set(ReportConfig.__dataclass_fields__):
        cfg = validate_parameters(merged)
        title = cfg.title
        preflight_input(cfg)  # the log's columns and first rows, before a kernel starts
    else:
        title = str(merged.get("title", path.stem))
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    removed = clean_stale_runs(root)
    if removed:
        say(f"[clvmodels] removed {len(removed)} unfinished run folder(s) of processes that no longer exist")
    name = f"{slug(title)}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    (work / OWNER_FILE).write_text(owner_record())
    executed = work / "report.ipynb"
    run_params = dict(given)
    if "output_dir" in defaults:
        run_params["output_dir"] = str(work.resolve())
    # the kernel runs in the run's own folder, not the caller's: IPython puts its working folder
    # first on sys.path, so a clvmodels.py (or pandas.py ...) lying in the caller's folder would
    # be imported and run by the report; relative input paths are made absolute for it
    for param in ("input_path", "customers_path", "events_path", "previous"):
        given_path = str(run_params.get(param) or "")
        if (given_path and given_path not in ("auto", "none") and not is_remote(given_path)
                and not Path(given_path).is_absolute()):
            run_params[param] = str(Path.cwd() / given_path)
    say(f"[clvmodels] running {path.name} into {root}")
    failure: str | None = None
    in_process_engine = _in_process_engine() if in_process else None
    engine = {"engine_name": in_process_engine} if in_process_engine else {}
    # beside a kernel this process only waits: the exporter is warmed then; in process it would compete
    warm = None if in_process_engine else _warming()
    try:
        try:
            with _child_stderr_to(work / "kernel.log"):
                pm.execute_notebook(str(path), str(executed), parameters=run_params, progress_bar=progress,
                                    cwd=str(work.resolve()), kernel_name="python3", **engine)
        except pm.PapermillExecutionError as exc:
            failure = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # kernel died, template unreadable, disk full ...
            failure = f"{type(exc).__name__}: {exc}"
        if failure is None:
            # papermill can return normally with errors recorded in the notebook; trust the outputs
            try:
                errors = _cell_errors(nbformat.read(str(executed), as_version=4)) if executed.exists() else ["no executed notebook"]
            except Exception as exc:
                errors = [f"executed notebook unreadable: {type(exc).__name__}: {exc}"]
            if errors:
                failure = errors[0]
        if failure is None:
            try:
                say("[clvmodels] exporting HTML")
                if warm is not None:
                    warm.join()
                _export_html(executed, work / "report.html", title)
                if not (work / "parameters.json").exists():
                    (work / "parameters.json").write_text(json.dumps(merged, indent=2, default=str))
            except Exception as exc:
                failure = f"HTML export failed: {type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        failure = "interrupted (Ctrl-C or SIGINT) before the report was finished"
    if failure is not None:
        failed = keep_failed(work, root, name, failure)
        where = f"Executed notebook kept for debugging: {failed / 'report.ipynb'}" if failed else (
            "The unfinished run could not be kept (the disk may be full); nothing was published.")
        raise ReportError(f"Report {path.name} failed: {failure}\n{where}")
    (work / OWNER_FILE).unlink(missing_ok=True)
    final = _publish(work, root, name)
    say(f"[clvmodels] report written: {final / 'report.html'}")
    return final


OWNER_FILE = ".clvmodels-run-owner"
_OWNER_FORMAT = "clvmodels-run-owner/1"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), so a reused pid
    is not mistaken for the run's owner; "" where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_record() -> str:
    """Who owns a run folder: host, pid namespace, pid and its start time (JSON)."""
    import socket

    pid = os.getpid()
    return json.dumps({"format": _OWNER_FORMAT, "host": socket.gethostname(), "pid_namespace": _pid_namespace(),
                       "pid": pid, "start": _process_start(pid)})


def _owner_gone(marker: Path) -> bool:
    """Whether the run recorded in ``marker`` provably ended: written by this project, on this
    host and in this pid namespace, and its process no longer exists (or the pid now belongs to
    a process that started at another time). Anything else - another host or container sharing
    the folder, a marker we cannot read - counts as alive."""
    import socket

    try:
        if marker.is_symlink():
            return False
        rec = json.loads(marker.read_text())
        if not isinstance(rec, dict) or rec.get("format") != _OWNER_FORMAT:
            return False
        if rec.get("host") != socket.gethostname() or rec.get("pid_namespace") != _pid_namespace():
            return False
        pid = int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not _pid_alive(pid):
        return True
    started = str(rec.get("start") or "")
    return bool(started) and _process_start(pid) not in ("", started)


@contextlib.contextmanager
def _child_stderr_to(path: Path):
    """Send what child processes (the Jupyter kernel) write to stderr into ``path``.

    The kernel inherits file descriptor 2: its start-up warnings and, on Ctrl-C, its own
    KeyboardInterrupt traceback would otherwise land on the user's terminal. This process's
    messages and the progress bar still reach the terminal through a duplicate of the old fd 2.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    log = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    old = sys.stderr
    real = getattr(old, "fileno", None)
    try:
        uses_fd2 = real is not None and real() == 2
    except (OSError, ValueError, io.UnsupportedOperation):
        uses_fd2 = False
    try:
        os.dup2(log, 2)
        if uses_fd2:
            sys.stderr = open(saved, "w", buffering=1, closefd=False, encoding=getattr(old, "encoding", None) or "utf-8")
        yield
    finally:
        if uses_fd2:
            try:
                sys.stderr.flush()
            finally:
                sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def make_readable(folder: Path) -> None:
    """Report folders are made by mkdtemp with mode 0700; give them the usual permissions
    (what the umask allows for a new folder), so others who may read reports/ can open them."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def _publish(work: Path, root: Path, name: str) -> Path:
    """Move the finished run to ``root/name`` (or ``name-2``, ``name-3`` ... when taken, e.g. by a
    run with the same title finishing in the same second): one rename, never over another run."""
    make_readable(work)
    for i in range(1, 10_000):
        final = root / (name if i == 1 else f"{name}-{i}")
        # lexists: a name taken by anything, a dangling symbolic link included, is taken
        if os.path.lexists(final) or os.path.lexists(root / f"{final.name}-FAILED"):
            continue
        try:
            os.rename(work, final)  # fails if another run took the name in between
            return final
        except OSError:
            if not os.path.lexists(final):
                raise
    raise ReportError(f"No free report folder name for {name!r} in {root}.")


def keep_failed(work: Path, root: Path, name: str, failure: str) -> Path | None:
    """Keep an unfinished run as ``name-FAILED`` with FAILED.txt; never raises (it runs when the
    disk may be full), returns None when even that was impossible and removes the temp folder."""
    import shutil

    try:
        (work / OWNER_FILE).unlink(missing_ok=True)
        (work / "FAILED.txt").write_text(f"This report run failed and is incomplete.\n{failure}\n")
    except OSError:
        pass
    for i in range(1, 10_000):
        failed = root / (f"{name}-FAILED" if i == 1 else f"{name}-{i}-FAILED")
        if os.path.lexists(failed):
            continue
        try:
            os.rename(work, failed)
            return failed
        except OSError:
            if os.path.lexists(failed):
                continue
            break
    shutil.rmtree(work, ignore_errors=True)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_runs(root: str | os.PathLike) -> list[Path]:
    """Remove the hidden ``.*.tmp`` run folders under ``root`` that this project made and whose
    run provably ended (killed with SIGKILL or by a power cut): each carries an owner record
    (host, pid namespace, pid and its start time) and is removed only when that process is gone
    on this host and namespace. Folders without the record (a user's own ``.notes.tmp``), of
    another host or container, or symbolic links are never touched."""
    import shutil

    removed = []
    for folder in Path(root).glob(".*.tmp"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        if not _owner_gone(folder / OWNER_FILE):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


