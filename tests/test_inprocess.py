"""The command line runs a report's cells in its own process (clvmodels.reporting.inprocess):
the executed notebook must be the one a Jupyter kernel gives, failures must end the same way."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from clvmodels.exceptions import ReportError
from clvmodels.reporting import inprocess, run_report

from .conftest import assert_interrupted, interrupt_report

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _template(path: Path, *cells: str) -> Path:
    params = new_code_cell('label = "x"\nrows = 3', metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, new_markdown_cell("# A template"),
                             *[new_code_cell(c) for c in cells]],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python"}})
    nbformat.write(nb, str(path))
    return path


CELLS = (
    "import sys\nprint('out', label)\nprint('err', file=sys.stderr)\nprint('more out')",
    "from IPython.display import HTML, Markdown, display\ndisplay(Markdown(f'**{label}**'))\n"
    "display(HTML('<b>h</b>'))",
    "rows * 2",
    "rows * 3;",
    "",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, rows])\nplt.title(label);",
    "import pandas as pd\npd.DataFrame({'a': range(rows)})",
)


def _outputs(folder: Path) -> list[list[tuple]]:
    """Each code cell's outputs without what differs between runs (image bytes, colours); the
    text of each stream whole (a kernel sends stdout and stderr on timers, so how they
    interleave and where a stream output is split depends on timing)."""
    nb = nbformat.read(str(folder / "report.ipynb"), as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "injected-parameters" in cell.metadata.get("tags", []):
            continue
        outs = []
        streams: dict[str, str] = {}
        for out in cell.outputs:
            if out.output_type == "stream":
                streams[out.name] = streams.get(out.name, "") + out.text
            elif out.output_type == "error":
                outs.append(("error", out.ename, out.evalue, ANSI.sub("", "".join(out.traceback))[-200:]))
            else:
                data = {k: ("<png>" if k == "image/png" else v) for k, v in out.data.items()}
                outs.append((out.output_type, sorted(data.items()), out.get("execution_count")))
        cells.append([("stream", name, text) for name, text in sorted(streams.items())] + outs)
    return cells


def test_cells_run_here_give_the_notebook_a_kernel_gives(tmp_path):
    template = _template(tmp_path / "t.ipynb", *CELLS)
    params = {"label": "<i>y</i>", "rows": 4}
    here = run_report(template, params, tmp_path / "here", progress=False, log=lambda m: None, in_process=True)
    kernel = run_report(template, params, tmp_path / "kernel", progress=False, log=lambda m: None, in_process=False)
    ours, theirs = _outputs(here), _outputs(kernel)
    assert ours == theirs
    # what the comparison covers: streams in order and merged, displays, results (not after ';'), a figure
    assert ours[1] == [("stream", "stderr", "err\n"), ("stream", "stdout", "out <i>y</i>\nmore out\n")]
    assert [o[0] for o in ours[2]] == ["display_data", "display_data"]
    assert ours[3][0][0] == "execute_result" and ours[4] == [] and ours[5] == []
    assert [o[0] for o in ours[6]] == ["display_data"] and ("image/png", "<png>") in ours[6][0][1]
    nb = nbformat.read(str(here / "report.ipynb"), as_version=4)
    assert nb.metadata.papermill.parameters == params
    assert [c.metadata.papermill.status for c in nb.cells] == ["completed"] * len(nb.cells)
    assert (here / "report.html").read_text().count("<img") == 1


def test_a_failing_cell_ends_the_run_as_in_a_kernel(tmp_path):
    template = _template(tmp_path / "t.ipynb", "x = 1", "raise ValueError(f'bad {label}')", "print('never')")
    for where, in_process in (("here", True), ("kernel", False)):
        with pytest.raises(ReportError, match=r"cell \d+: ValueError: bad x") as info:
            run_report(template, {}, tmp_path / where, progress=False, log=lambda m: None, in_process=in_process)
        failed = Path(str(info.value).split("debugging: ", 1)[1].strip())
        nb = nbformat.read(str(failed), as_version=4)
        statuses = [c.metadata.papermill.status for c in nb.cells if "papermill" in c.metadata]
        assert statuses[-2:] == ["failed", "pending"], (where, statuses)
        assert nb.cells[-2].outputs[0].ename == "ValueError"
        assert nb.cells[-1].outputs == []
    assert _outputs(failed.parent) == _outputs(next((tmp_path / "here").glob("*-FAILED")))


def test_a_second_run_in_one_process_starts_with_an_empty_namespace(tmp_path):
    first = _template(tmp_path / "a.ipynb", "leftover = 42")
    second = _template(tmp_path / "b.ipynb", "print('leftover' in dir())")
    run_report(first, {}, tmp_path / "a", progress=False, log=lambda m: None, in_process=True)
    folder = run_report(second, {}, tmp_path / "b", progress=False, log=lambda m: None, in_process=True)
    assert _outputs(folder)[1] == [("stream", "stdout", "False\n")]


def test_inside_another_ipython_shell_a_kernel_runs_the_report(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    assert inprocess.available()  # pytest's process: no IPython shell but ours
    monkeypatch.setattr(InteractiveShell, "initialized", classmethod(lambda cls: True))
    monkeypatch.setattr(InteractiveShell, "instance", classmethod(lambda cls, *a, **k: object()))
    assert not inprocess.available()


@pytest.mark.parametrize("where", [[], ["--kernel"]], ids=["in process", "kernel"])
def test_ctrl_c_in_a_running_cell_is_an_interruption(tmp_path, where):
    """SIGINT while a cell runs, in the command's own process or in a kernel: one line, nothing
    published."""
    template = _template(tmp_path / "t.ipynb", "import time\nprint('started', flush=True)\ntime.sleep(60)")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clvmodels.cli", "report", "--template", str(template), "--output", str(out),
           "--no-progress", *where]
    assert_interrupted(*interrupt_report(cmd, out, ROOT, 1.0), out)


def test_the_console_script_still_runs_exit_handlers_and_flushes(tmp_path):
    """``clvmodels.cli.run`` leaves with os._exit after the command: what atexit holds (DuckDB's
    close, temporary folders, Spark's gateway) still runs, output is not lost, the code is kept."""
    marker = tmp_path / "atexit-ran"
    code = (f"import atexit, sys\natexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
            "sys.argv = ['clvmodels', 'report', '-p', 'margin', '2', '--output', "
            f"{str(tmp_path / 'out')!r}]\nprint('before', end='')\nfrom clvmodels.cli import run\nrun()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1
    assert proc.stdout == "before"
    assert "margin must be > 0.0 and <= 1.0, got 2" in proc.stderr and "Traceback" not in proc.stderr
    assert marker.read_text() == "yes"
