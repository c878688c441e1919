"""Run a notebook with papermill into a new, complete run folder.

A run is built in a hidden temporary folder beside its final place and renamed into place
only when everything in it (executed notebook, ``report.html``, ``metrics.json`` if the
notebook wrote one, ``run.json``) is written, so readers never see a half-written run.
A watchdog thread enforces the timeouts; SIGINT/SIGTERM cancel the run. Both stop the
kernel the same way: interrupt it (the cell raises ``KeyboardInterrupt`` and its traceback
lands in the report), and kill it when it has not stopped ``interrupt_grace`` seconds later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import sys
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from workbench._io import atomic_write, atomic_write_json
from workbench.errors import WorkbenchError
from workbench.reports._meta import environment_info, find_project_root
from workbench.reports._params import (
    OUTPUT_DIR,
    notebook_parameters,
    parameters_cell_index,
    read_notebook,
    resolve_parameters,
)

__all__ = ["run_notebook", "RunResult", "EXIT_CODES", "STATUSES", "LATEST"]

log = logging.getLogger("workbench.reports")

#: Status of a finished run -> exit code of ``workbench report run`` (bad input exits 2).
EXIT_CODES = {"ok": 0, "failed": 1, "timeout": 3, "cancelled": 130}
STATUSES = tuple(EXIT_CODES)
#: Name of the per-notebook folder entry that points at the newest successful run.
LATEST = "latest"
RUN_SCHEMA = 1
_PARTIAL_SUFFIX = ".partial"
_ENGINE = "workbench"
_PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run_notebook` produced.

    Attributes
    ----------
    status : str
        ``"ok"``, ``"failed"``, ``"timeout"`` or ``"cancelled"``.
    run_dir : Path
        The run folder ``OUT/<notebook stem>/<UTC timestamp>-<params hash>[-N]/``.
    notebook : Path
        The executed notebook inside ``run_dir`` (partial when the run did not succeed).
    report : Path
        ``run_dir / "report.html"``, self-contained.
    metrics : dict or None
        Content of ``metrics.json`` when the notebook wrote one into ``output_dir``.
    record : dict
        Content of ``run.json``.
    latest : Path or None
        ``OUT/<notebook stem>/latest`` when this run moved it (successful runs only).
    """

    status: str
    run_dir: Path
    notebook: Path
    report: Path
    metrics: dict | None
    record: dict
    latest: Path | None = None

    @property
    def ok(self) -> bool:
        """True when the notebook ran to the end."""
        return self.status == "ok"

    @property
    def exit_code(self) -> int:
        """The exit code ``workbench report run`` uses for this status (0, 1, 3 or 130)."""
        return EXIT_CODES[self.status]

    @property
    def error(self) -> dict | None:
        """``run.json``'s error: failing cell index, source excerpt, ``ename``, ``evalue``."""
        return self.record.get("error")

    @property
    def parameters(self) -> dict:
        """The parameters passed to the notebook (without ``output_dir``)."""
        return self.record.get("parameters", {})


class _RunStopped(Exception):
    """Raised between cells once the run is being stopped (timeout or cancel)."""


# -- papermill engine with a supervised kernel ----------------------------------------------------

class _Supervisor:
    """Watches the deadlines and stops the kernel on timeout or on a signal.

    Stopping sends SIGINT to the kernel's process group (the cell fails with
    KeyboardInterrupt and papermill records its output), then SIGKILL after ``grace`` seconds
    if the kernel is still busy (nbclient then raises DeadKernelError).
    """

    def __init__(self, run_timeout: float | None, cell_timeout: float | None, grace: float):
        self.run_timeout = run_timeout
        self.cell_timeout = cell_timeout
        self.grace = grace
        self.km = None
        self.reason: str | None = None
        self.detail = ""
        self.cell_index: int | None = None  # executing cell, in the parameterized notebook
        self.stopped_cell: int | None = None
        self.finishing = False
        self._lock = threading.Lock()
        self._run_deadline = time.monotonic() + run_timeout if run_timeout else None
        self._cell_deadline: float | None = None
        self._kill_at: float | None = None
        self._killed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="workbench-report-watchdog", daemon=True)

    # lifecycle
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    # hooks called by nbclient (main thread)
    def attach(self, km) -> None:
        self.km = km

    def cell_started(self, cell=None, cell_index=None, **_: Any) -> None:
        with self._lock:
            self.cell_index = cell_index
            if self.cell_timeout:
                self._cell_deadline = time.monotonic() + self.cell_timeout
            stopping = self.reason is not None
            if stopping and self.stopped_cell is None:
                self.stopped_cell = cell_index
        if stopping:
            raise _RunStopped(self.reason)

    def cell_finished(self, cell=None, cell_index=None, **_: Any) -> None:
        with self._lock:
            self.cell_index = None
            self._cell_deadline = None

    # stopping
    def stop(self, reason: str, detail: str) -> None:
        """Ask the run to stop; a second request kills the kernel at once."""
        with self._lock:
            first = self.reason is None
            if first:
                self.reason, self.detail = reason, detail
                self.stopped_cell = self.cell_index
                self._kill_at = time.monotonic() + self.grace
            else:
                self._kill_at = time.monotonic()
        if self.finishing:
            if first:
                log.warning("%s: the notebook has finished; writing the run folder, please wait", detail)
            return
        if first:
            log.warning("stopping the run: %s; interrupting the kernel", detail)
            self._signal_kernel(signal.SIGINT)

    def on_signal(self, signum, frame) -> None:  # installed with signal.signal
        name = signal.Signals(signum).name
        again = self.reason == "cancelled"
        self.stop("cancelled", f"received {name}")
        if again and not self.finishing:
            log.warning("received %s again: killing the kernel now", name)

    def _signal_kernel(self, signum) -> bool:
        prov = getattr(self.km, "provisioner", None) if self.km is not None else None
        if prov is None:
            return False
        pgid = getattr(prov, "pgid", None)
        proc = getattr(prov, "process", None)
        try:
            if pgid and hasattr(os, "killpg"):
                os.killpg(pgid, signum)
            elif proc is not None:
                if signum == getattr(signal, "SIGKILL", None):
                    proc.kill()
                else:
                    proc.send_signal(signum)
            else:
                return False
        except (ProcessLookupError, PermissionError):
            return True  # gone already
        except OSError:
            return False
        return True

    def _watch(self) -> None:
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        while not self._done.wait(0.1):
            now = time.monotonic()
            if self.reason is None and not self.finishing:
                if self._run_deadline is not None and now >= self._run_deadline:
                    self.stop("timeout", f"the run exceeded its timeout of {self.run_timeout:g} s")
                elif self._cell_deadline is not None and now >= self._cell_deadline:
                    self.stop("timeout", f"a cell exceeded the cell timeout of {self.cell_timeout:g} s")
            if (self._kill_at is not None and now >= self._kill_at and not self._killed
                    and not self.finishing):
                if self._signal_kernel(kill):
                    self._killed = True
                    log.warning("the kernel did not stop within %g s of the interrupt: killed it",
                                self.grace)


def _engine_class():
    """papermill engine whose kernel manager and cell hooks are visible to the supervisor."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.log import logger as pm_logger

    class _SupervisedClient(PapermillNotebookClient):
        supervisor: _Supervisor | None = None

        def create_kernel_manager(self):
            km = super().create_kernel_manager()
            if self.supervisor is not None:
                self.supervisor.attach(km)
            return km

    class WorkbenchEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None,
                                     supervisor=None, kernel_env=None, **kwargs):
            kwargs.pop("input_path", None)
            kwargs.pop("timeout", None)
            kwargs.pop("startup_timeout", None)
            hooks = {}
            if supervisor is not None:
                hooks = {"on_cell_execute": supervisor.cell_started,
                         "on_cell_executed": supervisor.cell_finished}
            client = _SupervisedClient(
                nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                kernel_name=kernel_name, log=pm_logger, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, **hooks, **kwargs,
            )
            client.supervisor = supervisor
            return client.execute(env=kernel_env) if kernel_env is not None else client.execute()

    return WorkbenchEngine


_registered = False


def _register_papermill_extensions() -> None:
    """Register our engine and a Python translator that injects tuples as tuples.

    papermill's PythonTranslator writes a tuple as the *string* ``"(512, 512)"``.
    """
    global _registered
    if _registered:
        return
    from papermill.engines import papermill_engines
    from papermill.translators import PythonTranslator, papermill_translators

    class _TupleAwarePythonTranslator(PythonTranslator):
        @classmethod
        def translate(cls, val):
            if isinstance(val, tuple):
                items = [cls.translate(v) for v in val]
                return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
            return super().translate(val)

    papermill_engines.register(_ENGINE, _engine_class())
    if papermill_translators._translators.get("python") is PythonTranslator:
        papermill_translators.register("python", _TupleAwarePythonTranslator)
    _registered = True


class _QuietPapermill(logging.Filter):
    """Drop papermill warnings about parameters we validated ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not msg.startswith(("Passed unknown parameter", "Unable to parse line"))


@contextlib.contextmanager
def _signals_cancel(supervisor: _Supervisor, enabled: bool):
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, supervisor.on_signal)
        except (ValueError, OSError):  # pragma: no cover - exotic platforms
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- helpers -------------------------------------------------------------------------------------

def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(ts: datetime.datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def params_hash(values: Mapping[str, Any]) -> str:
    """Short, stable hash of the parameters passed to a run (8 hex digits)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _excerpt(source: str, max_lines: int = 12, max_chars: int = 800) -> str:
    lines = source.splitlines()
    text = "\n".join(lines[:max_lines])
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    elif len(lines) > max_lines:
        text += "\n..."
    return text


def _resolve_kernel(nb, kernel_name: str | None) -> dict:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(name)
    except NoSuchKernel:
        available = ", ".join(sorted(ksm.find_kernel_specs())) or "none"
        raise WorkbenchError(
            f"the notebook asks for kernel {name!r}, which is not installed (available: {available}); "
            "pass --kernel NAME or change the notebook's kernel") from None
    argv0 = spec.argv[0] if spec.argv else ""
    executable = sys.executable if argv0 in _PYTHON_NAMES else (shutil.which(argv0) or argv0)
    if spec.language and spec.language.lower() != "python":
        log.warning("kernel %r runs %s; parameters are injected as Python", name, spec.language)
    elif os.path.dirname(os.path.abspath(executable)) != os.path.dirname(os.path.abspath(sys.executable)):
        log.warning("kernel %r runs %s, not the Python running workbench (%s): the notebook may not "
                    "see this environment's packages (see `jupyter kernelspec list`, or pass --kernel)",
                    name, executable, sys.executable)
    return {"name": name, "display_name": spec.display_name, "executable": executable,
            "resource_dir": spec.resource_dir}


def _make_stem_dir(out_dir: Path, stem: str) -> Path:
    stem_dir = out_dir / stem
    try:
        stem_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkbenchError(f"cannot use --out {out_dir}: {stem_dir} or a parent exists and is a file") from None
    except NotADirectoryError:
        raise WorkbenchError(f"cannot create {stem_dir}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise WorkbenchError(f"cannot create the output folder {stem_dir}: {exc.strerror or exc}") from None
    if not stem_dir.is_dir():
        raise WorkbenchError(f"cannot use --out {out_dir}: {stem_dir} is not a folder")
    return stem_dir


def _make_partial_dir(stem_dir: Path, base: str) -> Path:
    """A new hidden ``.<base>.<random>.partial`` folder (``os.mkdir``: mode follows the umask)."""
    for _ in range(100):
        tmp = stem_dir / f".{base}.{secrets.token_hex(4)}{_PARTIAL_SUFFIX}"
        try:
            os.mkdir(tmp)
        except FileExistsError:
            continue
        except OSError as exc:
            raise WorkbenchError(f"cannot write into {stem_dir}: {exc.strerror or exc}") from None
        return tmp
    raise WorkbenchError(f"cannot create a temporary run folder in {stem_dir}")  # pragma: no cover


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _share(path: Path) -> None:
    """Give a file written by ``atomic_write`` (mode 0600) the usual ``0666 & ~umask``."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_umask())


def _publish(tmp: Path, stem_dir: Path, base: str) -> Path:
    """Rename the finished temporary folder to ``base`` (or ``base-2``, ``base-3``...)."""
    for n in itertools.count(1):
        final = stem_dir / (base if n == 1 else f"{base}-{n}")
        if os.path.lexists(final):
            continue
        try:
            os.rename(tmp, final)  # fails on a non-empty existing folder: never overwrites a run
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                continue
            raise
        return final
    raise AssertionError("unreachable")  # pragma: no cover


def _point_latest(stem_dir: Path, run_dir: Path) -> Path:
    """Atomically make ``stem_dir/latest`` refer to ``run_dir``.

    A relative symlink is created under a temporary name and renamed over ``latest``
    (``os.replace``). Where symlinks are not available, ``latest`` is a copy of the run,
    swapped in by two renames.
    """
    latest = stem_dir / LATEST
    token = uuid.uuid4().hex[:8]
    tmp = stem_dir / f".{LATEST}.{token}.tmp"
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError, AttributeError):
        shutil.copytree(run_dir, tmp, symlinks=True)
    try:
        os.replace(tmp, latest)
    except OSError:
        # ``latest`` is a real folder (an earlier copy): move it aside, then swap.
        old = stem_dir / f".{LATEST}.{token}.old"
        os.rename(latest, old)
        os.replace(tmp, latest)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()
    return latest


def _load_executed(path: Path, fallback):
    import nbformat

    try:
        with open(path, encoding="utf-8") as fh:
            return nbformat.read(fh, as_version=4)
    except Exception:  # noqa: BLE001 - missing or partial: show the source notebook instead
        return fallback


def _read_metrics(path: Path, warnings: list[str]) -> dict | None:
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        warnings.append(f"metrics.json is not valid JSON: {exc}")
        return None
    if not isinstance(data, dict):
        warnings.append("metrics.json does not hold a JSON object")
        return None
    return data


# -- the public entry point --------------------------------------------------------------------

def run_notebook(
    notebook: str | os.PathLike,
    out_dir: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    cell_timeout: float | None = None,
    show_code: bool = False,
    kernel_name: str | None = None,
    cwd: str | os.PathLike | None = None,
    interrupt_grace: float = 10.0,
    handle_signals: bool = True,
    log_output: bool = False,
    progress: bool = False,
    start_timeout: float = 60.0,
) -> RunResult:
    """Execute a notebook with papermill into a new run folder and render its report.

    The run goes to ``out_dir/<notebook stem>/<UTC timestamp>-<params hash>/`` (``-2``,
    ``-3``... when that name is taken), holding the executed ``<stem>.ipynb``, a
    self-contained ``report.html``, ``metrics.json`` (when the notebook writes one into
    ``output_dir``) and ``run.json``. After a successful run ``out_dir/<stem>/latest`` is
    switched atomically to it. A previous run is never overwritten.

    Parameters
    ----------
    notebook : str or path
        The ``.ipynb`` to run. Its first code cell tagged ``parameters`` declares what may be
        passed; a notebook without one runs with its own values (a warning is logged).
    out_dir : str or path
        Reports folder; created if missing.
    parameters : mapping, optional
        Parameter values. Names must be declared in the notebook; values are converted to the
        declared type (strings are parsed, see :meth:`NotebookParameter.convert`). ``output_dir``
        is reserved: notebooks that declare it get the run folder.
    timeout : float, optional
        Seconds the whole run (kernel start included) may take. None: no limit.
    cell_timeout : float, optional
        Seconds any one cell may take. None: no limit.
    show_code : bool
        Keep code cells in ``report.html`` (hidden by default).
    kernel_name : str, optional
        Kernel to use instead of the notebook's ``kernelspec``.
    cwd : str or path, optional
        Working directory of the kernel. Default: the project root (nearest folder at or above
        the notebook holding a ``pyproject.toml``), else the notebook's folder; notebooks
        resolve relative paths from there.
    interrupt_grace : float
        Seconds between interrupting a kernel (timeout, cancel) and killing it.
    handle_signals : bool
        While the run lasts, SIGINT and SIGTERM cancel it cleanly (main thread only).
    log_output : bool
        Log the notebook's stdout/stderr (to the ``papermill`` logger).
    progress : bool
        Show papermill's progress bar on stderr.
    start_timeout : float
        Seconds to wait for the kernel to start.

    Returns
    -------
    RunResult
        ``status`` is ``"ok"``, ``"failed"`` (a cell raised, or the kernel died), ``"timeout"``
        or ``"cancelled"``; the run folder is complete in every case.

    Raises
    ------
    WorkbenchError
        Bad input, before anything is written: missing or invalid notebook, unknown parameter
        (the message lists the valid ones), a value of the wrong type, an unknown kernel, or
        an output folder that cannot be created.

    Examples
    --------
    >>> result = run_notebook("notebooks/01_quickstart.ipynb", "reports",
    ...                       {"image_size": "[512, 512]"}, timeout=1800)  # doctest: +SKIP
    >>> result.status, result.report  # doctest: +SKIP
    ('ok', PosixPath('reports/01_quickstart/20250101T120000Z-3f2a9c1b/report.html'))
    """
    # ---- validate everything before writing anything
    nb_path = Path(notebook).expanduser().absolute()
    if nb_path.suffix.lower() != ".ipynb" and nb_path.exists():
        log.warning("%s does not end in .ipynb; reading it as a notebook anyway", nb_path)
    source_nb = read_notebook(Path(notebook).expanduser())
    declared = notebook_parameters(source_nb)
    values = resolve_parameters(declared, parameters, notebook_name=str(notebook))
    if declared is None:
        log.warning("%s has no cell tagged 'parameters': it runs with its own values, "
                    "and output_dir is not injected", notebook)
    for name, value in (("timeout", timeout), ("cell_timeout", cell_timeout),
                        ("interrupt_grace", interrupt_grace), ("start_timeout", start_timeout)):
        if value is not None and not value > 0:
            raise WorkbenchError(f"{name} must be a positive number of seconds, got {value!r}")
    kernel = _resolve_kernel(source_nb, kernel_name)
    if cwd is not None:
        root = Path(cwd).expanduser().absolute()
        if not root.is_dir():
            raise WorkbenchError(f"working directory not found: {root}")
    else:
        root = find_project_root(nb_path.parent) or nb_path.parent
    out_dir = Path(out_dir).expanduser().absolute()
    stem = nb_path.stem
    stem_dir = _make_stem_dir(out_dir, stem)

    # ---- the run
    _register_papermill_extensions()
    import papermill

    started = _utc_now()
    t0 = time.monotonic()
    base = f"{started:%Y%m%dT%H%M%SZ}-{params_hash(values)}"
    tmp = _make_partial_dir(stem_dir, base)
    executed_path = tmp / f"{stem}.ipynb"
    inject = dict(values)
    if declared is not None and OUTPUT_DIR in declared:
        inject[OUTPUT_DIR] = str(tmp)
    log.info("running %s (kernel %s, cwd %s) into %s", nb_path, kernel["name"], root, stem_dir)
    if inject:
        log.info("parameters: %s", json.dumps(inject, default=str))

    supervisor = _Supervisor(timeout, cell_timeout, interrupt_grace)
    quiet = _QuietPapermill()
    pm_loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    for lg in pm_loggers:
        lg.addFilter(quiet)
    status, error, pm_exc = "ok", None, None
    interrupted: BaseException | None = None
    with _signals_cancel(supervisor, handle_signals):
        supervisor.start()
        try:
            try:
                papermill.execute_notebook(
                    str(nb_path), str(executed_path), parameters=inject or None,
                    engine_name=_ENGINE, kernel_name=kernel["name"], cwd=str(root),
                    progress_bar=progress, log_output=log_output,
                    start_timeout=int(max(1, round(start_timeout))), supervisor=supervisor,
                    kernel_env=_kernel_env(root, tmp),
                )
            except KeyboardInterrupt as exc:  # signals not handled here (not the main thread)
                interrupted = exc
                supervisor.stop("cancelled", "KeyboardInterrupt")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a run status
                pm_exc = exc
            finally:
                supervisor.finishing = True
                for lg in pm_loggers:
                    lg.removeFilter(quiet)
            ended = _utc_now()
            duration = time.monotonic() - t0

            # ---- what happened
            executed = _load_executed(executed_path, source_nb)
            if pm_exc is not None or interrupted is not None:
                status = supervisor.reason or "failed"
                error = _describe_error(pm_exc, supervisor, source_nb, executed, values, declared)
            warnings: list[str] = []
            if status != "ok" and not executed_path.exists():
                _write_notebook(executed_path, executed)
            metrics = _read_metrics(tmp / "metrics.json", warnings)
            record = {
                "schema": RUN_SCHEMA,
                "notebook": _display_path(nb_path, root),
                "notebook_path": str(nb_path),
                "status": status,
                "exit_code": EXIT_CODES[status],
                "parameters": values,
                "params_hash": params_hash(values),
                "output_dir_injected": OUTPUT_DIR in inject,
                "started": _iso(started),
                "ended": _iso(ended),
                "duration_seconds": round(duration, 3),
                "timeout_seconds": timeout,
                "cell_timeout_seconds": cell_timeout,
                "error": error,
                "files": {"notebook": executed_path.name, "report": "report.html",
                          "metrics": "metrics.json" if metrics is not None else None},
                "cwd": str(root),
                "kernel": kernel,
                **environment_info(root),
                "warnings": warnings,
            }
            _write_report(tmp / "report.html", executed, record, show_code, nb_path, tmp, root, warnings)
            atomic_write_json(tmp / "run.json", record, default=str)
            for name in ("run.json", "report.html", executed_path.name):
                _share(tmp / name)
            try:
                run_dir = _publish(tmp, stem_dir, base)
            except OSError as exc:
                raise WorkbenchError(f"the run ended ({status}) but could not be renamed from {tmp} "
                                     f"into {stem_dir}: {exc.strerror or exc}") from None
            latest = None
            if status == "ok":
                try:
                    latest = _point_latest(stem_dir, run_dir)
                except OSError as exc:
                    record["warnings"].append(f"could not update {stem_dir / LATEST}: {exc}")
        finally:
            supervisor.close()

    _log_outcome(status, run_dir, duration, error, record["warnings"])
    result = RunResult(status=status, run_dir=run_dir, notebook=run_dir / executed_path.name,
                       report=run_dir / "report.html", metrics=metrics, record=record, latest=latest)
    if interrupted is not None:
        raise interrupted
    return result


def _kernel_env(root: Path, run_dir: Path) -> dict[str, str]:
    """The kernel's environment: ours, plus what makes its outputs work offline.

    HoloViews/Panel and Bokeh load BokehJS from CDNs in notebook outputs unless told to inline
    it (``PANEL_INLINE``, ``BOKEH_RESOURCES``); values the caller set are kept.
    """
    env = dict(os.environ)
    env.setdefault("PANEL_INLINE", "true")
    env.setdefault("BOKEH_RESOURCES", "inline")
    env.setdefault("WORKBENCH_PROJECT_ROOT", str(root))
    env["WORKBENCH_RUN_DIR"] = str(run_dir)
    return env


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _write_notebook(path: Path, nb) -> None:
    import nbformat

    with atomic_write(path, "w") as fh:
        nbformat.write(nb, fh)


def _describe_error(exc, supervisor: _Supervisor, source_nb, executed, values, declared) -> dict:
    """run.json's ``error``: which cell (index in the source notebook), its source, ename, evalue."""
    from papermill.exceptions import PapermillExecutionError

    # Index in the parameterized notebook -> index in the source notebook.
    param_idx = parameters_cell_index(source_nb)
    had_injected = any("injected-parameters" in c.get("metadata", {}).get("tags", [])
                       for c in source_nb.cells)
    injected_at = None
    if not had_injected and param_idx is not None and (values or (declared and OUTPUT_DIR in declared)):
        injected_at = param_idx + 1

    def to_source(i: int | None) -> int | None:
        if i is None or injected_at is None:
            return i
        if i == injected_at:
            return None
        return i - 1 if i > injected_at else i

    cell_index = exec_count = None
    ename, evalue, tb = type(exc).__name__ if exc else "KeyboardInterrupt", str(exc or ""), ""
    if isinstance(exc, PapermillExecutionError):
        cell_index, exec_count = exc.cell_index, exc.exec_count
        ename, evalue = exc.ename, exc.evalue
        tb = _strip_ansi("\n".join(exc.traceback or []))
    elif isinstance(exc, _RunStopped):
        cell_index = supervisor.stopped_cell
    else:
        cell_index = supervisor.stopped_cell if supervisor.reason else supervisor.cell_index
        if exc is not None and type(exc).__name__ == "DeadKernelError" and not supervisor.reason:
            evalue = evalue or "the kernel died (out of memory, a crash, or killed from outside)"
    src_index = to_source(cell_index)
    source = ""
    if src_index is not None and 0 <= src_index < len(source_nb.cells):
        source = source_nb.cells[src_index].source
    elif cell_index is not None:  # the injected cell itself
        source = "(the injected parameters cell)"
    error = {
        "cell_index": src_index,
        "execution_count": exec_count,
        "source_excerpt": _excerpt(source) if source else "",
        "ename": ename,
        "evalue": evalue,
    }
    if supervisor.reason:
        # The kernel's own KeyboardInterrupt is a consequence; say why the run was stopped.
        error["kernel_error"] = f"{ename}: {evalue}".strip().rstrip(":")
        error["ename"] = "TimeoutError" if supervisor.reason == "timeout" else "Cancelled"
        error["evalue"] = supervisor.detail
    if tb:
        error["traceback"] = tb[-4000:]
    return error


def _write_report(path: Path, executed, record: dict, show_code: bool, nb_path: Path, tmp: Path,
                  root: Path, warnings: list[str]) -> None:
    from workbench.reports._html import banner_html, render_report

    anchor = any("papermill-error-cell-tag" in c.get("metadata", {}).get("tags", [])
                 for c in executed.cells)
    banner = banner_html(record, error_anchor=anchor and record["status"] != "ok")
    try:
        page, problems = render_report(executed, show_code=show_code, banner=banner, title=nb_path.stem,
                                       image_dirs=[nb_path.parent, tmp, root])
    except Exception as exc:  # noqa: BLE001 - a broken output must not lose the run
        log.exception("rendering report.html failed")
        warnings.append(f"report.html could not be rendered from the notebook: {type(exc).__name__}: {exc}")
        import html as _html

        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html.escape(nb_path.stem)}"
                f"</title></head><body>{banner}<p>The report could not be rendered: "
                f"{_html.escape(type(exc).__name__)}: {_html.escape(str(exc))}. "
                f"Open the executed notebook {_html.escape(record['files']['notebook'])} instead.</p>"
                "</body></html>")
        problems = []
    for problem in problems:
        warnings.append(f"report.html {problem}")
    with atomic_write(path, "w") as fh:
        fh.write(page)


def _log_outcome(status: str, run_dir: Path, duration: float, error: dict | None, warnings: list[str]) -> None:
    for w in warnings:
        log.warning("%s", w)
    if status == "ok":
        log.info("run ok in %.1f s: %s", duration, run_dir / "report.html")
        return
    where = ""
    if error and error.get("cell_index") is not None:
        where = f" in cell {error['cell_index']}"
    msg = f"{error.get('ename')}: {error.get('evalue')}" if error else ""
    log.error("run %s after %.1f s%s: %s; report: %s", status, duration, where, msg, run_dir / "report.html")
