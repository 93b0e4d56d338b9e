"""A papermill engine that runs a report's cells in this process (issue 30, item 1).

A Jupyter kernel costs a command-line report 2-3 s before and between its cells: the
kernel starts (about 1 s), imports numpy, pandas, scipy and clvmodels again (about 2 s, the
calling process has most of them already), and every cell's outputs travel as messages. For a
small log that is a quarter of the run. The command line therefore runs the template here, in an
IPython shell of its own, through papermill's engine interface: papermill still injects the
parameters, keeps its metadata and raises the same :class:`papermill.PapermillExecutionError`
for a failing cell, and the executed notebook has the outputs a kernel would have given
(streams, rich displays, results, errors with IPython's traceback, ``%matplotlib inline``
figures).

What differs from a kernel: the cells share the process with the caller (its modules, its
matplotlib settings, its working folder, which papermill sets to the run folder), so this is
used only where nothing else lives in the process - the command line - and never inside an
IPython or Jupyter session (:func:`available`); the notebook is saved every few seconds while
it runs instead of twice per cell.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from typing import Any

import nbformat
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from papermill.engines import Engine, papermill_engines
from traitlets import Type
from traitlets.config import Config

__all__ = ["ENGINE_NAME", "InProcessEngine", "available"]

ENGINE_NAME = "clvmodels-in-process"
# the executed notebook is written while it runs at most this often (seconds), and always at the
# start and the end (papermill's own saves); a kernel run saves it at every cell's start and end
SAVE_EVERY = 5.0


class _Outputs:
    """The outputs of the cell that runs now, in the order it makes them."""

    def __init__(self, count: int | None = None) -> None:
        self.items: list[Any] = []
        self.error: tuple[str, str] | None = None
        self.count = count  # the cell's execution count (its results carry it)

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        last = self.items[-1] if self.items else None
        if last is not None and last.output_type == "stream" and last.name == name:
            last.text += text
        else:
            self.items.append(nbformat.v4.new_output("stream", name=name, text=text))

    def display(self, data: dict, metadata: dict | None) -> None:
        self.items.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata or {}))

    def result(self, data: dict, metadata: dict | None) -> None:
        self.items.append(nbformat.v4.new_output("execute_result", data=data, metadata=metadata or {},
                                                 execution_count=self.count))

    def fail(self, ename: str, evalue: str, traceback: list[str]) -> None:
        self.error = (ename, evalue)
        self.items.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=list(traceback)))

    def clear(self) -> None:
        self.items.clear()


class _Stream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a running cell: text becomes the cell's stream output."""

    def __init__(self, outputs: _Outputs, name: str) -> None:
        super().__init__()
        self._outputs = outputs
        self._name = name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as any text stream (and a kernel's) refuses bytes
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._outputs.stream(self._name, text)
        return len(text)


class _Publisher(DisplayPublisher):
    """``display(...)`` (and the inline backend's figures) into the running cell's outputs."""

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False):  # noqa: ARG002
        self.shell.outputs.display(data, metadata)

    def clear_output(self, wait=False):  # noqa: ARG002
        self.shell.outputs.clear()


class _Result(DisplayHook):
    """A cell's last expression (unless it ends with ``;``) as its ``execute_result``."""

    def write_output_prompt(self):
        pass

    def write_format_data(self, format_dict, md_dict=None):
        self.shell.outputs.result(format_dict, md_dict)

    def finish_displayhook(self):
        pass


class _Shell(InteractiveShell):
    """An IPython shell whose outputs are recorded for a notebook instead of printed."""

    displayhook_class = Type(_Result)
    display_pub_class = Type(_Publisher)

    def __init__(self, **kwargs: Any) -> None:
        self.outputs = _Outputs()
        super().__init__(**kwargs)

    def _showtraceback(self, etype, evalue, stb):
        self.outputs.fail(etype.__name__, str(evalue), stb)

    def enable_gui(self, gui=None):  # an inline report never opens windows
        pass


def available() -> bool:
    """Whether a report can run in this process: not inside another IPython shell (a Jupyter
    kernel or the IPython terminal), whose outputs and namespace it would take over."""
    return not InteractiveShell.initialized() or isinstance(InteractiveShell.instance(), _Shell)


def _shell() -> _Shell:
    """The process's recording shell, with an empty namespace (a second run starts clean)."""
    if _Shell.initialized():
        shell = _Shell.instance()
        shell.reset(new_session=False)
        shell.execution_count = 1  # numbered from 1, as a new kernel numbers them
        return shell
    config = Config()
    config.HistoryManager.enabled = False  # no history database in the user's IPython folder
    with warnings.catch_warnings():  # e.g. "IPython dir ... is not a writable location" (a kernel logs it)
        warnings.simplefilter("ignore")
        return _Shell.instance(config=config)


def _run_cell(shell: _Shell, source: str) -> tuple[list[Any], int | None, tuple[str, str] | None]:
    """One cell's source run: its outputs, execution count and error (name, value) if it failed."""
    shell.outputs = outputs = _Outputs(shell.execution_count)
    with contextlib.redirect_stdout(_Stream(outputs, "stdout")), contextlib.redirect_stderr(_Stream(outputs, "stderr")):
        result = shell.run_cell(source, store_history=True)
    if outputs.error is None and not result.success:  # an error IPython did not show (rare)
        exc = result.error_before_exec or result.error_in_exec
        outputs.fail(type(exc).__name__, str(exc), [])
    return outputs.items, result.execution_count, outputs.error


class InProcessEngine(Engine):
    """papermill's engine interface over :class:`_Shell` (see the module notes)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # noqa: ARG003
        shell = _shell()
        full_save = nb_man.save
        last = [time.monotonic()]

        def save(**kw: Any) -> None:
            if time.monotonic() - last[0] >= SAVE_EVERY:
                full_save(**kw)
                last[0] = time.monotonic()

        nb_man.save = save  # papermill saves at every cell's start and end; here every SAVE_EVERY s
        try:
            for index, cell in enumerate(nb_man.nb.cells):
                nb_man.cell_start(cell, index)
                try:
                    if cell.cell_type != "code" or not cell.source.strip():
                        continue
                    cell.outputs, cell.execution_count, error = _run_cell(shell, cell.source)
                    if error is not None:
                        nb_man.cell_exception(cell, cell_index=index)
                        if error[0] == "KeyboardInterrupt":
                            raise KeyboardInterrupt
                        break
                finally:
                    nb_man.cell_complete(cell, cell_index=index)
        finally:
            del nb_man.save
            shell.outputs = _Outputs()


papermill_engines.register(ENGINE_NAME, InProcessEngine)
