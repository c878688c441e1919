"""Our report notebooks run as jupyter-scheduler jobs (the optional ``[lab]`` extra).

A real Jupyter server with the jupyter_scheduler extension is started on 127.0.0.1 (free
port, token, temporary root and Jupyter dirs) and stopped with killpg. Jobs are created and
followed through the REST API, as JupyterLab's "Create Notebook Job" does.

What jupyter-scheduler 2.x does with a job (read from its source, checked here):

- The input notebook is copied to ``<staging>/<job_id>/`` (``staging_path`` defaults to
  ``$JUPYTER_DATA_DIR/scheduler_staging_area``); a spawned process executes it there with
  nbconvert's ExecutePreprocessor: the kernel's working directory is that staging folder,
  not the repository root.
- ``parameters`` are injected as a cell ``name = value`` with the value copied verbatim, so
  values are Python source: ``"7"`` gives the int 7, a string must be quoted (``"'abc'"``).
- Output formats (``ipynb``, ``html``) are written into the staging folder; files the notebook
  writes into its working directory are listed as job files only with
  ``package_input_folder: true``. ``GET /scheduler/jobs/<id>/download_files`` copies
  everything to ``<root_dir>/jobs/<stem>-<job_id>/`` (relative to the server's cwd).
- A job is ``STOPPED`` until its process starts (the database default), so a poller must not
  take ``STOPPED`` as final before the job was seen ``IN_PROGRESS``; ``name`` is required.

So a notebook knows where to write through its ``output_dir`` parameter: pass an absolute
path as a job parameter, or leave it empty to write into the working directory and create
the job with ``package_input_folder``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "tests" / "notebooks"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path, data_dir: Path):
        self.url, self.token, self.proc, self.log, self.data_dir = url, token, proc, log, data_dir

    def request(self, method: str, path: str, body=None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} -> {exc.code}: {exc.read()[:2000]!r}") from None
        return json.loads(text) if text else None

    def wait_job(self, job_id: str, timeout: float = 180) -> dict:
        """Poll until the job ends. A new job reads STOPPED until its process starts."""
        deadline = time.monotonic() + timeout
        started = False
        while True:
            job = self.request("GET", f"/scheduler/jobs/{job_id}")
            status = job["status"]
            started = started or status in ("IN_PROGRESS", "COMPLETED", "FAILED")
            if status in ("COMPLETED", "FAILED") or (status == "STOPPED" and started):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {status}; log:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("jupyter_scheduler", reason="jupyter-scheduler is the optional [lab] extra")
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        jupyter = shutil.which("jupyter")
    assert jupyter, "the jupyter command is missing"
    base = tmp_path_factory.mktemp("scheduler")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NB / "report_demo.ipynb", root / "notebooks" / "report_demo.ipynb")
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                 "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
        env[name] = str(base / "home" / name.lower())
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), uuid.uuid4().hex
    log = base / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(jupyter), "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.port_retries=0"],
            cwd=root,  # the scheduler downloads job files relative to the server's cwd
            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    srv = Server(f"http://127.0.0.1:{port}", token, proc, log, Path(env["JUPYTER_DATA_DIR"]))
    srv.root = root
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"jupyter server exited:\n{log.read_text()[-3000:]}"
            try:
                srv.request("GET", "/api/status", timeout=2)
                break
            except (OSError, AssertionError):
                assert time.monotonic() < deadline, f"jupyter server not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.3)
        yield srv
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def test_scheduler_jobs_run_our_notebook_with_parameters(server, tmp_path):
    envs = server.request("GET", "/scheduler/runtime_environments")
    assert envs and "ipynb" in [f["name"] for f in envs[0]["output_formats"]]
    env_name = envs[0]["name"]
    out_dir = tmp_path / "job-output"
    out_dir.mkdir()
    # Job A: output_dir passed as a parameter (Python source: strings are quoted).
    job_a = server.request("POST", "/scheduler/jobs", {
        "name": "report-demo-output-dir", "input_uri": "notebooks/report_demo.ipynb",
        "runtime_environment_name": env_name, "output_formats": ["ipynb", "html"],
        "parameters": {"n_items": "7", "label": "'from-scheduler'", "image_size": "[64, 32]",
                       "output_dir": repr(str(out_dir))},
    })["job_id"]
    # Job B: output_dir left empty -> metrics.json in the working directory, packaged with the job.
    job_b = server.request("POST", "/scheduler/jobs", {
        "name": "report-demo-packaged", "input_uri": "notebooks/report_demo.ipynb",
        "runtime_environment_name": env_name, "output_formats": ["ipynb"],
        "parameters": {"n_items": "2"}, "package_input_folder": True,
    })["job_id"]

    a = server.wait_job(job_a)
    b = server.wait_job(job_b)
    assert a["status"] == "COMPLETED", (a, server.log.read_text()[-3000:])
    assert b["status"] == "COMPLETED", (b, server.log.read_text()[-3000:])

    # Job A wrote our metrics.json where output_dir said, with the parameters' types.
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["n_items"] == 7 and metrics["score"] == 3.5
    assert metrics["values"]["label"] == "from-scheduler" and metrics["values"]["image_size"] == [64, 32]
    assert metrics["types"]["n_items"] == "int" and metrics["types"]["image_size"] == "list"
    staging = server.data_dir / "scheduler_staging_area" / job_a
    assert Path(metrics["cwd"]) == staging  # the kernel runs in the job's staging folder
    assert Path(metrics["python"]).parent == Path(sys.executable).parent

    # The executed notebook and the HTML output are in the staging folder.
    import nbformat

    executed = [p for p in staging.glob("report_demo-*.ipynb")]
    assert len(executed) == 1 and list(staging.glob("report_demo-*.html"))
    nb = nbformat.read(executed[0], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n_items = 7" in injected[0].source
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "score 3.5" in outputs

    # Job B: the file written into the working directory is a job file, downloaded on request.
    assert "metrics.json" in b["packaged_files"]
    server.request("GET", f"/scheduler/jobs/{job_b}/download_files")
    downloaded = server.root / "jobs" / f"report_demo-{job_b}" / "metrics.json"
    deadline = time.monotonic() + 30
    while True:  # the downloader (a separate process) writes the file in place
        try:
            metrics_b = json.loads(downloaded.read_text())
            break
        except (FileNotFoundError, ValueError):
            assert time.monotonic() < deadline, f"{downloaded} not downloaded"
            time.sleep(0.3)
    assert metrics_b["n_items"] == 2 and Path(metrics_b["cwd"]).name == job_b
