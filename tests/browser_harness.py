"""Real-browser tests: a private JupyterLab driven through Debian chromium with Playwright.

Every widget of the workbench is driven once in a real JupyterLab, because some bugs only a
browser shows (a binary trait that silently rejects what the page sends, comms that never
connect, a CSS border that shifts mouse coordinates). This module is the one harness those
tests share. It follows ``/work/shared/BROWSER_TESTING.md``:

* JupyterLab runs on ``127.0.0.1`` on a free port with a random token, in its own process
  session (stopped with ``killpg``), with every ``JUPYTER_*`` directory and ``IPYTHONDIR`` in a
  temporary directory and user settings written beforehand (no "Select Kernel" dialog, no
  news, no virtualised notebook windowing). The kernel is this interpreter
  (``sys.executable``): a ``python3`` kernelspec pointing at it is written into the private
  data directory, which Jupyter searches first.
* Chromium is ``/usr/bin/chromium`` (never ``playwright install``) with a fresh
  ``--user-data-dir`` per test. Every request is routed: ``127.0.0.1``, ``blob:`` and
  ``data:`` pass, anything else is aborted *and fails the test* at teardown (a widget that
  needs the internet is broken offline).
* Every ``page.evaluate`` and every poll is bounded by a timeout; on a failure the page is
  screenshotted into the test's tmp dir and the browser console and server log are printed.
* Under ``CI=true`` a missing chromium is a failure, never a skip; locally it is a skip.

Use
---
Import the fixtures into a test module (the import *is* the fixture registration)::

    import pytest
    from browser_harness import jupyter_lab_server, lab  # noqa: F401  (pytest fixtures)

    pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

    def test_counter_counts_clicks(lab):
        nb = lab.write_notebook("counter.ipynb", [
            "from my_widgets import Counter\nw = Counter()\nw",      # cells: code strings
        ])
        lab.open(nb)          # waits until the kernel is ready, idle and connected
        lab.run_all()         # raises KernelError with the traceback if a cell failed
        button = lab.locator("button.counter")   # CSS selectors pierce shadow DOM
        button.click(timeout=20_000)
        # page -> kernel: widget messages are handled before a later execute request
        lab.wait_for(lambda: lab.kernel_json("w.value") == 1, timeout=10, what="the click in the kernel")
        lab.execute("w.value = 7")                                      # kernel -> page
        lab.wait_for(lambda: button.inner_text() == "count 7", timeout=10, what="the page update")

(``tests/test_browser_embedding.py::test_harness_drives_an_anywidget`` runs exactly this with
an inline anywidget.) Mouse work: ``lab.page.mouse`` or :meth:`LabSession.drag`, in viewport
pixels; ``locator.bounding_box()`` gives an element's rectangle.

``lab.kernel_json(expr)`` evaluates ``expr`` in the notebook's kernel (a silent execute request
whose ``user_expressions`` carry the value back, not a cell) and returns it decoded from JSON;
``lab.execute(code)`` runs code in the notebook's globals and returns its stdout (captured in the
kernel: iopub stream messages are not reliable once widgets talk). ``lab.text(selector)`` reads
text *including shadow DOM* (``inner_text`` misses what Panel/Bokeh render). For HoloViews/Panel
views: :meth:`LabSession.wait_for_bokeh_plot` gives a plot's frame rectangle in page pixels and its
axis ranges (``plot.to_page(x, y)`` / ``plot.to_data(px, py)`` map a drag to data coordinates), and
:meth:`LabSession.activate_bokeh_tool` clicks a toolbar button (setting ``active_drag`` from
JavaScript is not equivalent). :meth:`LabSession.evaluate` runs any JavaScript with a timeout.

Panel views must work offline: load Panel with ``widgets.extension()`` (``pn.extension(inline=True)``)
and update HTML content through ``widgets._embedding.HTMLText``; a plain ``pn.extension()`` or an
updated ``pn.pane.Markdown``/``HTML``/``DataFrame`` makes the page fetch cdn.holoviz.org /
cdn.bokeh.org, which the routing turns into a test failure.

Run only these tests with ``pytest -m browser``; each takes ~15-30 s on two busy cores (a server per
module adds ~10 s once).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "BokehPlot",
    "HarnessError",
    "JupyterLabServer",
    "KernelError",
    "LabSession",
    "chromium_executable",
    "free_port",
    "jupyter_lab_server",
    "lab",
    "wait_for",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"

# JupyterLab user settings written before the server starts (file name -> JSON content).
# Without autoStartDefaultKernel a "Select Kernel" dialog appears at random and run-all waits
# forever; windowingMode "none" renders every cell (off-screen widget outputs included).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "autoStartDefaultKernel": True,
        "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class HarnessError(AssertionError):
    """The browser or JupyterLab did not reach the expected state in time."""


class KernelError(AssertionError):
    """Code run in the notebook's kernel raised; the message carries the traceback."""


# -- small helpers ---------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_executable() -> str:
    """``/usr/bin/chromium``; a missing browser skips the test locally and fails it under CI."""
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    msg = f"{CHROMIUM} is missing (apt-get install -y chromium; never `playwright install`)"
    if IN_CI:
        pytest.fail(f"CI=true: {msg}")
    pytest.skip(msg)


def wait_for(fn: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition",
              on_timeout: Callable[[], None] | None = None) -> Any:
    """Poll ``fn()`` until it returns a truthy value (returned) or ``timeout`` seconds pass.

    Exceptions raised by ``fn`` count as "not yet"; the last one is chained to the
    :class:`HarnessError` raised at the timeout. ``on_timeout`` runs first (e.g. a screenshot).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling: any error means "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            if on_timeout is not None:
                with contextlib.suppress(Exception):
                    on_timeout()
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else "")) from last_exc
        time.sleep(interval)


# -- the JupyterLab server -------------------------------------------------------------------
class JupyterLabServer:
    """A private JupyterLab server (``with JupyterLabServer(tmp) as server: ...``).

    ``base`` receives ``root/`` (the server's root_dir: write notebooks there), ``env/``
    (all Jupyter/IPython config, data, runtime, settings and workspace directories) and
    ``jupyterlab.log`` (the server's stdout and stderr).
    """

    def __init__(self, base: str | os.PathLike, *, python: str = sys.executable, startup_timeout: float = 60.0,
                 extra_env: dict[str, str] | None = None):
        self.base = Path(base)
        self.root_dir = self.base / "root"
        self.env_dir = self.base / "env"
        self.log_path = self.base / "jupyterlab.log"
        self.python = python
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        self.port: int | None = None
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self._log = None

    # directories and environment
    def _prepare(self) -> dict[str, str]:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        dirs = {
            "JUPYTER_CONFIG_DIR": self.env_dir / "config",
            "JUPYTER_DATA_DIR": self.env_dir / "data",
            "JUPYTER_RUNTIME_DIR": self.env_dir / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": self.env_dir / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.env_dir / "lab-workspaces",
            "IPYTHONDIR": self.env_dir / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for name, content in LAB_SETTINGS.items():
            path = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=2))
        # The kernel must be this interpreter (the venv), whatever Jupyter would otherwise
        # find: the private data dir is searched first, so this spec wins.
        spec_dir = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
        spec_dir.mkdir(parents=True, exist_ok=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (test venv)",
            "language": "python",
            "metadata": {"debugger": False},
        }, indent=1))
        env = dict(os.environ)
        env.update({k: str(v) for k, v in dirs.items()})
        env.update({
            "PYTHONUNBUFFERED": "1",
            "JUPYTER_PLATFORM_DIRS": "1",
            "MPLBACKEND": "Agg",
            # the kernel imports the repository's packages from a root_dir outside the repo
            "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH", "")] if p),
        })
        env.update(self.extra_env)
        return env

    def start(self, attempts: int = 3) -> "JupyterLabServer":
        """Start the server and wait for ``/api/status`` (a port taken meanwhile: retried)."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except HarnessError as exc:
                if "already in use" not in str(exc) or attempt == attempts - 1:
                    raise

    def _start_once(self) -> "JupyterLabServer":
        env = self._prepare()
        self.port = free_port()
        cmd = [
            self.python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            "--allow-root", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
            "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise HarnessError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.api("/api/status") is not None

        try:
            wait_for(up, timeout=self.startup_timeout, interval=0.2, what="JupyterLab /api/status")
        except HarnessError as exc:
            if self.proc.poll() is not None:  # the server died: say why, no point retrying
                self.stop()
                raise HarnessError(f"jupyter lab did not start:\n{self.log_tail()}") from exc
            self.stop()
            raise HarnessError(f"jupyter lab did not answer within {self.startup_timeout:.0f} s:\n"
                               f"{self.log_tail()}") from exc
        return self

    def stop(self) -> None:
        """Stop the server and its kernels: REST shutdown of the kernels, SIGTERM to the
        server's process group, SIGKILL after 10 s. (Kernels run in sessions of their own and
        also exit by themselves within a second of their parent's death.)"""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.shutdown_kernels()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # anything else the server started in its own session
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "JupyterLabServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # HTTP
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> Any:
        """JSON answer of the REST API at ``path`` (None when the server does not answer)."""
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None
        return json.loads(body) if body else {}

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel (frees the CPU for the next test)."""
        for kernel in self.api("/api/kernels") or []:
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=10)

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])


# -- notebooks -------------------------------------------------------------------------------
def make_notebook(cells: Iterable[str | dict], kernel: str = "python3") -> dict:
    """An nbformat-4 notebook dict with kernelspec metadata from code strings or cell dicts.

    A ``dict`` item is used as a cell as is (e.g. a markdown cell or a code cell with tags).
    """
    out = []
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": cell}
        cell = dict(cell)
        cell.setdefault("metadata", {})
        cell.setdefault("id", f"cell-{i}")
        if cell["cell_type"] == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        out.append(cell)
    return {
        "cells": out,
        "metadata": {
            "kernelspec": {"name": kernel, "display_name": "Python 3 (test venv)", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# -- the page --------------------------------------------------------------------------------
@dataclass
class BokehPlot:
    """A Bokeh plot on the page: its frame (the data area) in page CSS pixels and its ranges."""

    id: str
    name: str | None
    tags: list
    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    active_drag: str | None = None
    extra: dict = field(default_factory=dict)

    def to_page(self, x: float, y: float) -> tuple[float, float]:
        """Page pixel of the data point ``(x, y)`` (linear axes)."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return (self.left + (x - x0) / (x1 - x0) * self.width,
                self.top + (y1 - y) / (y1 - y0) * self.height)

    def to_data(self, px: float, py: float) -> tuple[float, float]:
        """Data coordinates of the page pixel ``(px, py)`` (linear axes)."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return (x0 + (px - self.left) / self.width * (x1 - x0),
                y1 - (py - self.top) / self.height * (y1 - y0))


_EVAL_WITH_TIMEOUT = """
async ([body, arg, ms]) => {
  const fn = new Function('arg', 'return (async () => {' + body + '})()');
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('evaluate timed out after ' + ms + ' ms')), ms);
  });
  try { return await Promise.race([fn(arg), timeout]); } finally { clearTimeout(timer); }
}
"""

_NOTEBOOK_STATE_JS = """
const app = window.jupyterapp;
if (!app) return {app: false};
const w = app.shell.currentWidget;
if (!w || !w.sessionContext) return {app: true, notebook: false};
const sc = w.sessionContext;
const k = sc.session && sc.session.kernel;
return {
  app: true, notebook: true, path: w.context ? w.context.path : null,
  ready: sc.isReady, kernel: k ? k.name : null, status: k ? k.status : null,
  connection: k ? k.connectionStatus : null, dialogs: document.querySelectorAll('.jp-Dialog').length,
};
"""

_RUN_ALL_JS = """
const app = window.jupyterapp;
await app.commands.execute('notebook:run-all-cells');
const nb = app.shell.currentWidget.content;
const cells = [];
for (const cell of nb.widgets) {
  if (cell.model.type !== 'code') continue;
  const outs = cell.model.outputs.toJSON();
  const err = outs.find(o => o.output_type === 'error');
  cells.push({count: cell.model.executionCount, error: err ? {ename: err.ename, evalue: err.evalue,
              traceback: err.traceback.join('\\n')} : null});
}
return cells;
"""

_EVAL_EXPR_JS = """
const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
const future = k.requestExecute({code: arg.code, silent: true, store_history: false,
                                 user_expressions: {value: arg.expr}});
const reply = await future.done;
return reply.content;
"""

_BOKEH_PLOTS_JS = """
const B = window.Bokeh;
if (!B || !B.index) return [];
const plots = [];
for (const v of B.index.all_views()) {
  const m = v.model;
  if (!m || m.type !== 'Plot' && !(B.Models && m instanceof B.Models.get('Plot'))) continue;
  if (!v.frame || !v.canvas_view) continue;
  const canvas = v.canvas_view.el.getBoundingClientRect();
  const f = v.frame.bbox;
  if (canvas.width === 0 || canvas.height === 0) continue;
  const drag = m.toolbar && m.toolbar.active_drag;
  plots.push({
    id: m.id, name: m.name, tags: m.tags || [],
    left: canvas.left + f.left, top: canvas.top + f.top, width: f.width, height: f.height,
    x_range: [m.x_range.start, m.x_range.end], y_range: [m.y_range.start, m.y_range.end],
    active_drag: drag && typeof drag === 'object' ? drag.type : (drag || null),
  });
}
return plots;
"""


_DEEP_TEXT_JS = """
(el) => {
  const deep = (n) => {
    let t = '';
    if (n.shadowRoot) t += deep(n.shadowRoot);
    for (const c of n.childNodes) {
      if (c.nodeType === 3) t += c.textContent;
      else if (c.nodeType === 1 || c.nodeType === 11) t += deep(c);
    }
    return t;
  };
  return deep(el).replace(/\\s+/g, ' ').trim();
}
"""

_TOOL_BUTTON_JS = """
const [id, type] = arg;
for (const v of window.Bokeh.index.all_views()) {
  const m = v.model;
  if (!m || m.id !== id || !m.toolbar) continue;
  const bar = window.Bokeh.index.find_one(m.toolbar);
  const found = {types: [], button: null, active: false};
  for (const bv of (bar ? bar.tool_button_views : [])) {
    const t = bv.model.tool;
    const tools = t.tools ? t.tools : [t];  // similar tools are grouped in a proxy
    found.types.push(...tools.map(x => x.type));
    if (tools.some(x => x.type === type)) {
      const r = bv.el.getBoundingClientRect();
      found.button = {x: r.left + r.width / 2, y: r.top + r.height / 2, width: r.width};
      found.active = tools.some(x => x.active);
    }
  }
  return found;
}
return null;
"""

_SCROLL_PLOT_JS = """
for (const v of window.Bokeh.index.all_views()) {
  if (v.model && v.model.id === arg && v.canvas_view) {
    v.canvas_view.el.scrollIntoView({block: 'center', inline: 'center'});
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return true;
  }
}
return false;
"""


class LabSession:
    """One chromium page on a :class:`JupyterLabServer`, with request routing and diagnostics.

    Usually obtained from the ``lab`` fixture. ``page`` is the Playwright page; ``artifacts``
    is where screenshots go. Timeouts are in seconds.
    """

    def __init__(self, server: JupyterLabServer, context, artifacts: Path):
        self.server = server
        self.context = context
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.blocked: list[str] = []
        self.console: list[str] = []
        self.page = context.pages[0] if context.pages else context.new_page()
        self.context.route("**/*", self._route)
        self.page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        self.notebook: str | None = None

    # routing: the page must need nothing but the local server
    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("blob:", "data:")) or url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def assert_no_external_requests(self) -> None:
        if self.blocked:
            shown = "\n  ".join(sorted(set(self.blocked))[:20])
            raise AssertionError(f"the page requested {len(self.blocked)} external URL(s); a widget must work "
                                 f"offline (vendor or inline its JS/CSS):\n  {shown}")

    # diagnostics
    def screenshot(self, name: str = "page") -> Path | None:
        path = self.artifacts / f"{name}.png"
        try:
            self.page.screenshot(path=str(path), full_page=True, timeout=10_000)
        except Exception:  # noqa: BLE001 - a dead page cannot be photographed
            return None
        return path

    def diagnostics(self) -> str:
        lines = ["--- browser console (last 40) ---", *self.console[-40:],
                 "--- jupyterlab log (last 40) ---", self.server.log_tail(40)]
        if self.blocked:
            lines += ["--- blocked requests ---", *sorted(set(self.blocked))]
        return "\n".join(lines)

    def _fail_shot(self, tag: str) -> Callable[[], None]:
        return lambda: self.screenshot(f"timeout-{tag}")

    # JavaScript with a timeout
    def evaluate(self, body: str, arg: Any = None, timeout: float = 10.0) -> Any:
        """Run the JavaScript function *body* (may ``await``; sees ``arg``) in the page and
        return its JSON-able result; rejected after ``timeout`` seconds."""
        try:
            return self.page.evaluate(_EVAL_WITH_TIMEOUT, [body, arg, int(timeout * 1000)])
        except Exception as exc:
            if "timed out" in str(exc):
                self.screenshot("evaluate-timeout")
                raise HarnessError(f"page.evaluate timed out after {timeout} s:\n{body[:300]}") from exc
            raise

    def locator(self, selector: str):
        """``page.locator(selector)`` (CSS selectors pierce open shadow roots, e.g. Bokeh's)."""
        return self.page.locator(selector)

    def text(self, selector: str, timeout: float = 5.0) -> str:
        """Text of the first element matching ``selector``, *including its shadow DOM*
        (``inner_text`` misses the content of Panel/Bokeh components, which live in shadow roots)."""
        return self.page.locator(selector).first.evaluate(_DEEP_TEXT_JS, timeout=timeout * 1000)

    # notebooks
    def write_notebook(self, name: str, cells: Iterable[str | dict], kernel: str = "python3") -> Path:
        """Write a notebook of ``cells`` (code strings or cell dicts) into the server's root dir."""
        path = self.server.root_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(make_notebook(cells, kernel), indent=1))
        return path

    def open(self, notebook: str | os.PathLike, timeout: float = 90.0) -> None:
        """Open ``notebook`` (a path under the root dir) and wait until its kernel is ready,
        idle and connected."""
        rel = Path(notebook)
        if rel.is_absolute():
            rel = rel.relative_to(self.server.root_dir)
        self.notebook = rel.as_posix()
        self.page.goto(f"{self.server.url}/lab/tree/{self.notebook}?token={self.server.token}",
                       wait_until="domcontentloaded", timeout=timeout * 1000)

        def ready():
            s = self.evaluate(_NOTEBOOK_STATE_JS, timeout=5)
            return (s.get("notebook") and s.get("path") == self.notebook and s.get("ready")
                    and s.get("status") == "idle" and s.get("connection") == "connected")

        wait_for(ready, timeout=timeout, interval=0.25, what=f"notebook {self.notebook} with an idle kernel",
                 on_timeout=self._fail_shot("open"))

    def notebook_state(self) -> dict:
        """Kernel/session state of the current notebook (for debugging)."""
        return self.evaluate(_NOTEBOOK_STATE_JS, timeout=5)

    def run_all(self, timeout: float = 180.0) -> list[dict]:
        """Run every cell (``notebook:run-all-cells``) and wait for the end; a cell that
        raised makes this raise :class:`KernelError` with its traceback."""
        cells = self.evaluate(_RUN_ALL_JS, timeout=timeout)
        for i, cell in enumerate(cells):
            if cell.get("error"):
                self.screenshot("cell-error")
                err = cell["error"]
                raise KernelError(f"code cell {i} raised {err['ename']}: {err['evalue']}\n"
                                  f"{_strip_ansi(err['traceback'])}")
        not_run = [i for i, c in enumerate(cells) if c.get("count") is None]
        if not_run:
            self.screenshot("cells-not-run")
            raise HarnessError(f"code cells {not_run} did not run")
        return cells

    # the kernel
    def execute(self, code: str, timeout: float = 30.0) -> str:
        """Run ``code`` in the notebook's kernel (in its globals; no cell is added) and return
        what it printed to stdout.

        Messages the page sent to the kernel before this call (widget/comm messages) are
        handled first: the kernel processes its shell channel in order. The output is captured
        in the kernel and returned in the execute reply: iopub stream messages are not
        reliable for this (after widget traffic some arrive after the request is finished).
        """
        wrapped = ("import contextlib as _hc, io as _hio\n_harness_out = _hio.StringIO()\n"
                   "with _hc.redirect_stdout(_harness_out):\n"
                   f"    exec(compile({code!r}, '<harness>', 'exec'), globals())\n")
        reply = self.evaluate(_EVAL_EXPR_JS, {"code": wrapped, "expr": "_harness_out.getvalue()"}, timeout=timeout)
        if reply.get("status") != "ok":
            raise KernelError(f"kernel raised {reply.get('ename')}: {reply.get('evalue')}\n"
                              f"{_strip_ansi(chr(10).join(reply.get('traceback') or []))}\ncode:\n{code}")
        value = (reply.get("user_expressions") or {}).get("value") or {}
        import ast

        return ast.literal_eval(value["data"]["text/plain"]) if value.get("status") == "ok" else ""

    def kernel_json(self, expr: str, timeout: float = 30.0) -> Any:
        """The value of the Python expression ``expr`` in the notebook's kernel, through JSON.

        Evaluated as a ``user_expressions`` entry of a silent execute request, so the value
        comes back in the shell reply (no dependence on stdout, no cell, no history).
        """
        import ast

        reply = self.evaluate(_EVAL_EXPR_JS, {"code": "", "expr": f"__import__('json').dumps({expr})"},
                              timeout=timeout)
        value = (reply.get("user_expressions") or {}).get("value")
        if reply.get("status") != "ok" or not value or value.get("status") != "ok":
            err = value if value and value.get("status") == "error" else reply
            raise KernelError(f"kernel could not evaluate {expr!r}: {err.get('ename')}: {err.get('evalue')}\n"
                              f"{_strip_ansi(chr(10).join(err.get('traceback') or []))}")
        return json.loads(ast.literal_eval(value["data"]["text/plain"]))

    def wait_for(self, fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1,
                 what: str = "condition") -> Any:
        """:func:`wait_for` that screenshots the page on a timeout."""
        return wait_for(fn, timeout=timeout, interval=interval, what=what, on_timeout=self._fail_shot("wait"))

    # Bokeh (HoloViews / Panel views)
    def bokeh_plots(self, timeout: float = 10.0) -> list[BokehPlot]:
        """Every rendered Bokeh plot: frame rectangle in page pixels, ranges and active drag tool."""
        return [BokehPlot(**p) for p in self.evaluate(_BOKEH_PLOTS_JS, timeout=timeout)]

    def wait_for_bokeh_plot(self, predicate: Callable[[BokehPlot], bool] = lambda p: True,
                            timeout: float = 30.0, scroll: bool = True) -> BokehPlot:
        """The first rendered Bokeh plot that satisfies ``predicate`` (polled); with ``scroll``
        it is scrolled to the middle of the viewport first (mouse coordinates are viewport
        coordinates) and its rectangle read again."""
        def find():
            return next((p for p in self.bokeh_plots() if p.width > 0 and predicate(p)), None)

        plot = self.wait_for(find, timeout=timeout, interval=0.2, what="a rendered Bokeh plot")
        if not scroll:
            return plot
        self.evaluate(_SCROLL_PLOT_JS, plot.id, timeout=5)
        return self.wait_for(lambda: next((p for p in self.bokeh_plots() if p.id == plot.id), None),
                             timeout=10, what=f"Bokeh plot {plot.id} after scrolling")

    def activate_bokeh_tool(self, plot_id: str, tool_type: str, timeout: float = 10.0) -> None:
        """Activate the tool ``tool_type`` (e.g. ``"LassoSelectTool"``, ``"PanTool"``) of the
        plot ``plot_id`` by clicking its toolbar button, as a user does.

        (Setting ``toolbar.active_drag`` from JavaScript is not equivalent: after a box
        selection had been made, a lasso activated that way selected nothing.)
        """
        found = self.evaluate(_TOOL_BUTTON_JS, [plot_id, tool_type], timeout=5)
        if found is None:
            raise HarnessError(f"no Bokeh plot {plot_id} with a toolbar on the page")
        if found["button"] is None:
            raise HarnessError(f"plot {plot_id} has no {tool_type} button; its tools: {found['types']}")
        if not found["active"]:
            self.page.mouse.click(found["button"]["x"], found["button"]["y"])
        self.wait_for(lambda: self.evaluate(_TOOL_BUTTON_JS, [plot_id, tool_type], timeout=5)["active"],
                      timeout=timeout, what=f"{tool_type} to become active")

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 12,
             path: Iterable[tuple[float, float]] = ()) -> None:
        """Press the left button at ``start`` (page pixels), move through ``path`` to ``end``
        in ``steps`` steps, release."""
        m = self.page.mouse
        m.move(*start)
        m.down()
        for p in path:
            m.move(*p, steps=max(1, steps // 4))
        m.move(*end, steps=steps)
        m.up()


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text or "")


# -- pytest fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jupyter_lab_server(tmp_path_factory):
    """One private JupyterLab per test module (kernels are shut down after every test)."""
    chromium_executable()  # skip/fail before paying for the server
    base = tmp_path_factory.mktemp("jupyterlab")
    server = JupyterLabServer(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(request, jupyter_lab_server, tmp_path):
    """A :class:`LabSession`: fresh chromium profile, routed requests, screenshot on failure."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    failed_before = request.session.testsfailed
    with sync_playwright() as pw:
        profile = tmp_path / "chromium-profile"
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, device_scale_factor=1,
        )
        session = LabSession(jupyter_lab_server, context, tmp_path / "browser-artifacts")
        try:
            yield session
        finally:
            failed = request.session.testsfailed > failed_before
            if failed:
                shot = session.screenshot("failure")
                print(f"\nscreenshot: {shot}\n{session.diagnostics()}")
            with contextlib.suppress(Exception):
                context.close()
            jupyter_lab_server.shutdown_kernels()
    session.assert_no_external_requests()
