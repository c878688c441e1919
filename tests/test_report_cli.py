"""``workbench report run`` / ``workbench report index``: exit codes, stdout/stderr, signals.

Most tests call ``workbench.cli.main`` in-process (a kernel start each); the signal tests run
the real command in a subprocess and cancel it with SIGINT (as Ctrl-C does) or SIGTERM (as
systemd and Airflow do).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.reports import LATEST

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "tests" / "notebooks"
JUPYTER_DIRS = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")


@pytest.fixture(autouse=True)
def _jupyter_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp() / "cli-jupyter-home"
    base.mkdir(exist_ok=True)
    for name in JUPYTER_DIRS:
        monkeypatch.setenv(name, str(base / name.lower()))


def run_cli(*args: str) -> int:
    return main(["report", *map(str, args)])


def runs_in(stem_dir: Path) -> list[Path]:
    if not stem_dir.exists():
        return []
    return sorted(p for p in stem_dir.iterdir() if p.name != LATEST)


# -- no kernel ----------------------------------------------------------------------------------------

def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("run", "--help")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("-p NAME VALUE", "--timeout S", "--show-code", "--out DIR", "exit codes", "130",
                 "repository root"):
        assert text in out


def test_list_parameters(capsys):
    assert run_cli("run", NB / "report_demo.ipynb", "--list-parameters") == 0
    out = capsys.readouterr().out
    assert "image_size" in out and "list" in out and "[256, 256]" in out and "how many items" in out
    assert run_cli("run", NB / "report_demo.ipynb") == 2
    assert "--out DIR is required" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["missing.ipynb"], "notebook not found: missing.ipynb"),
    ([NB / "report_demo.ipynb", "-p", "n_itemz", "3"],
     "has no parameter 'n_itemz'. Did you mean 'n_items'?"),
    ([NB / "report_demo.ipynb", "-p", "n_items", "3.5"], "parameter 'n_items' expects int"),
    ([NB / "report_demo.ipynb", "-p", "flag", "maybe"], "parameter 'flag' expects bool"),
    ([NB / "report_demo.ipynb", "-p", "image_size", "[512, 512"], "expects list"),
    ([NB / "report_demo.ipynb", "-p", "output_dir", "x"], "set by `workbench report run`"),
    ([NB / "no_params.ipynb", "-p", "a", "1"], "no code cell tagged 'parameters'"),
    ([NB / "report_demo.ipynb", "-f", "missing.yaml"], "parameters file not found"),
    ([NB / "report_demo.ipynb", "--timeout", "0"], "timeout must be a positive"),
    ([NB / "report_demo.ipynb", "--kernel", "nope"], "kernel 'nope', which is not installed"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "reports"
    code = run_cli("run", *args, "--out", out)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench report: error: ") and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_unknown_parameter_message_lists_names_types_defaults(tmp_path, capsys):
    assert run_cli("run", NB / "report_demo.ipynb", "-p", "bogus", "1", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    for text in ("data_dir", "str", '"data/sample"', "n_items", "int", "= 3", "shape", "tuple", "(2, 3)",
                 "threshold", "any", "None"):
        assert text in err


@pytest.mark.parametrize("content, message", [
    ("- 1\n- 2\n", "must map names to values"),
    ("a: [1, 2\n", "is not valid YAML"),
    ("n_items: 2.5\n", "parameter 'n_items' expects int"),
])
def test_bad_parameters_file(tmp_path, capsys, content, message):
    params = tmp_path / "params.yaml"
    params.write_text(content)
    assert run_cli("run", NB / "report_demo.ipynb", "-f", params, "--out", tmp_path / "r") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_out_under_a_regular_file_exits_2(tmp_path, capsys):
    # As root, chmod does not make a folder unwritable: a path under a regular file does.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert run_cli("run", NB / "report_demo.ipynb", "--out", blocker / "reports") == 2
    err = capsys.readouterr().err
    assert "a parent of it is a file" in err and str(blocker) in err
    assert blocker.read_text() == "a file"


def test_index_of_missing_folder_exits_2(tmp_path, capsys):
    assert run_cli("index", tmp_path / "nope") == 2
    assert "reports folder not found" in capsys.readouterr().err


# -- with a kernel --------------------------------------------------------------------------------------

def test_run_with_parameters_file_and_overrides(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("n_items: 4\nimage_size: [128, 128]\nlabel: from-file\nflag: true\nthreshold: 0.5\n")
    out = tmp_path / "deep" / "new" / "reports"  # created if missing
    code = run_cli("run", NB / "report_demo.ipynb", "-f", params, "-p", "label", "from cli",
                   "-p", "image_size", "[512, 512]", "-p", "shape", "[7, 8]", "--out", out)
    captured = capsys.readouterr()
    assert code == 0
    run_dir = Path(captured.out.strip())
    assert captured.out.count("\n") == 1 and run_dir.parent == out / "report_demo"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok"
    assert record["parameters"] == {"n_items": 4, "image_size": [512, 512], "label": "from cli", "flag": True,
                                    "threshold": 0.5, "shape": [7, 8]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["types"]["shape"] == "tuple" and metrics["values"]["image_size"] == [512, 512]
    assert (out / "report_demo" / LATEST / "report.html").exists()
    assert run_cli("index", out) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == out / "index.html" and run_dir.name in index.read_text()


def test_notebook_without_parameters_cell_runs_and_says_so(tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="workbench.reports")
    assert run_cli("run", NB / "no_params.ipynb", "--out", tmp_path) == 0
    assert "has no cell tagged 'parameters'" in caplog.text
    run_dir = Path(capsys.readouterr().out.strip())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok" and record["files"]["metrics"] is None


def test_failing_notebook_exits_1_and_index_flag(tmp_path, capsys):
    assert run_cli("run", NB / "failing.ipynb", "--index", "--out", tmp_path) == 1
    run_dir = Path(capsys.readouterr().out.strip())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["error"]["ename"] == "ValueError" and record["error"]["cell_index"] == 2
    assert 'data-status="failed"' in (run_dir / "report.html").read_text()
    assert run_dir.name in (tmp_path / "index.html").read_text()
    assert not (tmp_path / "failing" / LATEST).exists()


def test_timeout_exits_3(tmp_path, capsys):
    t0 = time.monotonic()
    assert run_cli("run", NB / "sleepy.ipynb", "--timeout", "3", "--out", tmp_path) == 3
    assert time.monotonic() - t0 < 30
    run_dir = Path(capsys.readouterr().out.strip())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "timeout" and record["timeout_seconds"] == 3
    assert record["error"]["ename"] == "TimeoutError"
    assert 'data-status="timeout"' in (run_dir / "report.html").read_text()


# -- the real command, cancelled by a signal ------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_cancels_the_run_cleanly(tmp_path, signum):
    psutil = pytest.importorskip("psutil")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in JUPYTER_DIRS:
        env[name] = str(tmp_path / "home" / name.lower())
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "report", "run", str(NB / "sleepy.ipynb"), "--out", "reports"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    stem_dir = tmp_path / "reports" / "sleepy"
    try:
        deadline = time.monotonic() + 90
        while not list(stem_dir.glob(".*.partial/started")):  # the sleeping cell has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.1)
        kernels = [c for c in psutil.Process(proc.pid).children(recursive=True)]
        assert kernels, "no kernel process found"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # Ctrl-C: the terminal signals the foreground group
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    run_dir = Path(out.strip())
    assert run_dir.is_absolute() and run_dir.parent == stem_dir.resolve()
    assert "received " + signal.Signals(signum).name in err  # logs go to stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert record["error"]["ename"] == "Cancelled" and record["error"]["cell_index"] == 1
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "run.json", "sleepy.ipynb", "started"]
    assert 'data-status="cancelled"' in (run_dir / "report.html").read_text()
    assert [p.name for p in stem_dir.iterdir()] == [run_dir.name]  # no .partial, no latest
    gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive, f"kernel processes left behind: {alive}"
