"""workbench.reports: parameters, run folders, statuses, latest, HTML, index.

The notebooks are tiny fixtures in tests/notebooks (regenerate with make_fixtures.py); each
run costs about one kernel start (~2 s). Runs shared by several tests are module-scoped.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.reports import (
    EXIT_CODES,
    LATEST,
    ParameterError,
    collect_runs,
    notebook_parameters,
    run_notebook,
    write_index,
)
from workbench.reports import _run
from workbench.reports._html import inline_cdn_assets, offline_problems, render_report
from workbench.reports._params import _parse_cell, resolve_parameters

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "tests" / "notebooks"
NETWORK_TAGS = re.compile(r"""<(?:script|img)[^>]+src=["']?(?:https?:)?//|<link[^>]+href=["']?(?:https?:)?//""",
                          re.IGNORECASE)


@pytest.fixture(scope="module", autouse=True)
def _jupyter_dirs(tmp_path_factory):
    """Keep Jupyter and IPython out of the home folder; kernels come from the venv."""
    base = tmp_path_factory.mktemp("jupyter-home")
    names = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")
    old = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ[n] = str(base / n.lower())
    yield
    for n, v in old.items():
        if v is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = v


def assert_offline(page: str) -> None:
    assert not NETWORK_TAGS.search(page), NETWORK_TAGS.search(page).group(0)
    assert '<script src="http' not in page and '<link href="http' not in page
    assert offline_problems(page) == []


def run_dirs(stem_dir: Path) -> list[Path]:
    return sorted(p for p in stem_dir.iterdir() if not p.name.startswith(".") and p.name != LATEST)


# -- parameters (no kernel) -------------------------------------------------------------------------

def test_notebook_parameters_reads_types_defaults_and_help():
    params = notebook_parameters(NB / "report_demo.ipynb")
    assert list(params)[:4] == ["data_dir", "n_items", "ratio", "flag"]
    kinds = {name: p.type_name for name, p in params.items()}
    assert kinds == {
        "data_dir": "str", "n_items": "int", "ratio": "float", "flag": "bool", "label": "str",
        "image_size": "list", "shape": "tuple", "options": "dict", "threshold": "any",
        "limit": "float | None", "fail_at_end": "bool", "output_dir": "str",
    }
    assert params["image_size"].default == [256, 256]
    assert params["shape"].default == (2, 3)
    assert params["n_items"].annotation == "int"
    assert params["n_items"].help == "how many items to score"
    assert notebook_parameters(NB / "no_params.ipynb") is None


def test_parameters_cell_parsing_edge_cases():
    params = _parse_cell(
        "%matplotlib inline\n"
        "# the detector to use\n"
        "detector = 'padim'\n"
        "sizes = {\n    'a': 1,  # inner comment\n    'b': 2,\n}  # sizes per stage\n"
        "root = Path('data')  # an expression\n"
        "k: Optional[int] = None\n"
        "x, y = 1, 2\n"
        "detector = 'patchcore'  # reassigned: the last one wins\n",
        where="test")
    assert list(params) == ["sizes", "root", "k", "detector"]
    assert params["detector"].default == "patchcore"
    assert params["detector"].help == "reassigned: the last one wins"
    assert params["sizes"].default == {"a": 1, "b": 2} and params["sizes"].help == "sizes per stage"
    assert params["root"].kind == "any" and params["root"].default_source == "Path('data')"
    assert params["k"].type_name == "int | None"
    assert params["k"].convert("7") == 7 and params["k"].convert("none") is None
    with pytest.raises(WorkbenchError, match="not valid Python"):
        _parse_cell("x = (", where="bad cell")


def _p(default, annotation=None):
    src = f"x{': ' + annotation if annotation else ''} = {default!r}"
    return _parse_cell(src, where="test")["x"]


@pytest.mark.parametrize("default, text, expected", [
    (3, "12", 12), (3, " -4 ", -4),
    (0.5, "2", 2.0), (0.5, "1e-3", 0.001), (0.5, "-0.25", -0.25),
    (False, "true", True), (False, "FALSE", False), (True, "0", False), (False, "1", True),
    ("demo", "123", "123"), ("demo", "null", "null"), ("demo", "", ""),
    ([256, 256], "[512, 512]", [512, 512]), ([1], "[a, 'b c']", ["a", "b c"]),
    ((2, 3), "[4, 5]", (4, 5)), ((2, 3), "(4, 5)", None),
    ({"a": 1}, '{"mode": "slow", "k": 2}', {"mode": "slow", "k": 2}), ({"a": 1}, "mode: fast", {"mode": "fast"}),
    (None, "0.75", 0.75), (None, "abc", "abc"), (None, "null", None), (None, "None", None),
    (None, "[1, 2]", [1, 2]), (None, "2024-01-31", "2024-01-31"),
])
def test_values_are_parsed_to_the_declared_type(default, text, expected):
    param = _p(default)
    if expected is None and isinstance(default, tuple):
        # YAML has no tuples: "(4, 5)" is the string "(4, 5)", which is not a tuple
        with pytest.raises(ParameterError, match="expects tuple"):
            param.convert(text)
        return
    value = param.convert(text)
    assert value == expected and type(value) is type(expected)


def test_typed_values_from_yaml_or_python_are_checked():
    assert _p(0.5).convert(2) == 2.0 and isinstance(_p(0.5).convert(2), float)
    assert _p((1, 2)).convert([3, 4]) == (3, 4)
    assert _p("s").convert(2024) == "2024"
    assert _p(False).convert(1) is True
    assert _p(1.0, "float | None").convert(None) is None
    for param, value in [(_p(3), 2.5), (_p(3), True), (_p(3), "2.5"), (_p(3), "abc"), (_p(0.5), "fast"),
                         (_p(False), "yes"), (_p(False), 2), (_p([1]), "{a: 1}"), (_p([1]), "[1, 2"),
                         (_p({"a": 1}), "[1]"), (_p("s"), None), (_p(3), None), (_p("s"), [1])]:
        with pytest.raises(ParameterError) as info:
            param.convert(value)
        msg = str(info.value)
        assert "parameter 'x' expects" in msg and "default" in msg and "got" in msg


def test_unknown_parameter_lists_valid_names_types_and_defaults():
    declared = notebook_parameters(NB / "report_demo.ipynb")
    with pytest.raises(ParameterError) as info:
        resolve_parameters(declared, {"n_item": "3"}, notebook_name="report_demo.ipynb")
    msg = str(info.value)
    assert "has no parameter 'n_item'" in msg and "Did you mean 'n_items'" in msg
    for line in ("n_items", "int", "= 3", "how many items to score", "image_size", "list", "[256, 256]",
                 "limit", "float | None"):
        assert line in msg
    with pytest.raises(ParameterError, match="output_dir.*set by `workbench report run`"):
        resolve_parameters(declared, {"output_dir": "/tmp/x"})
    with pytest.raises(ParameterError, match="no code cell tagged 'parameters'"):
        resolve_parameters(None, {"a": "1"}, notebook_name="no_params.ipynb")
    assert resolve_parameters(None, {}) == {}


def test_bad_input_writes_nothing(tmp_path):
    out = tmp_path / "reports"
    cases = [
        (dict(notebook=tmp_path / "missing.ipynb"), "notebook not found"),
        (dict(notebook=tmp_path), "found a folder"),
        (dict(parameters={"nope": 1}), "has no parameter 'nope'"),
        (dict(parameters={"n_items": "three"}), "parameter 'n_items' expects int"),
        (dict(kernel_name="no-such-kernel"), "kernel 'no-such-kernel', which is not installed"),
        (dict(timeout=0), "timeout must be a positive"),
        (dict(cell_timeout=-1), "cell_timeout must be a positive"),
    ]
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    cases.append((dict(notebook=broken), "cannot read notebook|not a valid Jupyter notebook"))
    for kwargs, match in cases:
        kwargs.setdefault("notebook", NB / "report_demo.ipynb")
        with pytest.raises(WorkbenchError, match=match):
            run_notebook(out_dir=out, **kwargs)
        assert not out.exists(), kwargs
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for bad_out in (a_file / "reports", a_file):
        with pytest.raises(WorkbenchError, match="is a file|not a folder|cannot"):
            run_notebook(NB / "report_demo.ipynb", bad_out)
    assert a_file.read_text() == "not a folder"


# -- runs (kernels) -----------------------------------------------------------------------------------

TYPED_PARAMS = {
    "n_items": "5", "ratio": "0.25", "flag": "true", "label": "x y", "image_size": "[512, 512]",
    "shape": "[4, 5]", "options": '{"mode": "slow", "k": 2}', "threshold": "0.75", "limit": "null",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One successful run, then a failed run of the same notebook, then a failing notebook."""
    out = tmp_path_factory.mktemp("reports")
    t0 = time.monotonic()
    ok = run_notebook(NB / "report_demo.ipynb", out, TYPED_PARAMS)
    failed_same = run_notebook(NB / "report_demo.ipynb", out, {"fail_at_end": "1"})
    failing = run_notebook(NB / "failing.ipynb", out)
    return {"out": out, "ok": ok, "failed_same": failed_same, "failing": failing,
            "seconds": time.monotonic() - t0}


def test_successful_run_folder_layout(runs):
    ok, out = runs["ok"], runs["out"]
    assert ok.status == "ok" and ok.exit_code == 0 and ok.ok
    assert ok.run_dir.parent == out / "report_demo"
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", ok.run_dir.name)
    assert ok.run_dir.name.endswith(ok.record["params_hash"])
    assert sorted(p.name for p in ok.run_dir.iterdir()) == ["metrics.json", "report.html",
                                                            "report_demo.ipynb", "run.json"]
    assert not [p for p in (out / "report_demo").iterdir() if p.name.endswith(".partial")]
    record = json.loads((ok.run_dir / "run.json").read_text())
    assert record == json.loads(json.dumps(ok.record, default=str))
    for key in ("notebook", "parameters", "status", "started", "ended", "duration_seconds", "project",
                "python", "packages", "host", "kernel", "error"):
        assert key in record
    assert record["notebook"] == "tests/notebooks/report_demo.ipynb"
    assert record["status"] == "ok" and record["error"] is None
    assert record["project"]["version"] and "commit" in record["project"]["git"]
    assert record["packages"]["papermill"] and record["python"]["version"] == sys.version.split()[0]
    assert record["host"]["hostname"]
    started = datetime.datetime.fromisoformat(record["started"].replace("Z", "+00:00"))
    ended = datetime.datetime.fromisoformat(record["ended"].replace("Z", "+00:00"))
    assert 0 < record["duration_seconds"] <= (ended - started).total_seconds() + 0.01
    assert record["parameters"]["image_size"] == [512, 512]
    assert record["files"] == {"notebook": "report_demo.ipynb", "report": "report.html", "metrics": "metrics.json"}


def test_parameters_reach_the_kernel_with_their_types(runs):
    metrics = runs["ok"].metrics
    assert metrics == json.loads((runs["ok"].run_dir / "metrics.json").read_text())
    assert metrics["types"] == {
        "data_dir": "str", "n_items": "int", "ratio": "float", "flag": "bool", "label": "str",
        "image_size": "list", "shape": "tuple", "options": "dict", "threshold": "float",
        "limit": "NoneType",
    }
    assert metrics["values"]["shape"] == [4, 5] and metrics["values"]["options"] == {"mode": "slow", "k": 2}
    assert metrics["values"]["label"] == "x y" and metrics["score"] == 1.25


def test_kernel_runs_in_the_repo_root_with_the_venv_python(runs):
    metrics = runs["ok"].metrics
    assert Path(metrics["cwd"]) == REPO  # relative paths in notebooks are relative to the repo root
    assert Path(metrics["python"]).parent == Path(sys.executable).parent
    assert runs["ok"].record["kernel"]["executable"] == sys.executable
    # output_dir pointed at the run folder while it was being built
    assert Path(metrics["output_dir"]).parent == runs["ok"].run_dir.parent
    assert Path(metrics["output_dir"]).name.endswith(".partial")


def test_report_html_is_self_contained_with_code_hidden(runs):
    page = runs["ok"].report.read_text()
    assert_offline(page)
    assert 'data-status="ok"' in page
    assert "params = dict(" not in page
    assert "class=\"jp-CodeMirrorEditor" not in page  # code hidden
    assert 'id="html-output"' in page and "score 1.25" in page  # outputs kept
    imgs = re.findall(r"<img\b[^>]*\bsrc=[\"']([^\"']+)", page)
    assert len(imgs) == 2 and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert runs["ok"].record["warnings"] == []


def test_show_code_keeps_code_cells(runs):
    import nbformat

    nb = nbformat.read(runs["ok"].notebook, as_version=4)
    page, warnings = render_report(nb, show_code=True, banner="<div>b</div>", title="t", image_dirs=[NB])
    assert "class=\"jp-CodeMirrorEditor" in page and "fail_at_end" in page
    assert_offline(page) and warnings == []


def test_failing_notebook_status_error_and_banner(runs):
    failing = runs["failing"]
    assert failing.status == "failed" and failing.exit_code == 1
    error = failing.record["error"]
    assert error["cell_index"] == 2  # index in the source notebook (parameters cell is 0)
    assert error["ename"] == "ValueError" and error["evalue"] == "boom: the fixture fails on purpose"
    assert "raise ValueError" in error["source_excerpt"] and "Traceback" in error["traceback"]
    assert json.loads((failing.run_dir / "run.json").read_text())["status"] == "failed"
    page = failing.report.read_text()
    assert_offline(page)
    banner = page.index('<div class="wb-banner')
    assert page.index("<main>") < banner < page.index('<div class="jp-Cell') < page.index("before the failure")
    head = page[banner:banner + 3000]
    assert 'data-status="failed"' in head and "ValueError" in head and "boom: the fixture fails" in head
    assert "never reached" not in page
    assert (failing.run_dir / "failing.ipynb").exists()
    assert not (failing.run_dir.parent / LATEST).exists()  # never succeeded: no latest


def test_latest_points_at_the_last_successful_run_only(runs):
    ok, failed_same = runs["ok"], runs["failed_same"]
    assert failed_same.status == "failed" and failed_same.latest is None
    assert failed_same.record["error"]["ename"] == "RuntimeError"
    assert failed_same.metrics is not None  # written before the failure: kept
    latest = ok.run_dir.parent / LATEST
    assert ok.latest == latest and latest.is_symlink()
    assert os.readlink(latest) == ok.run_dir.name  # relative
    assert (latest / "report.html").read_bytes() == ok.report.read_bytes()
    assert not [p for p in ok.run_dir.parent.iterdir() if p.name.startswith(".latest")]


def test_index_of_real_runs(runs):
    index = write_index(runs["out"])
    page = index.read_text()
    assert_offline(page)
    for result in (runs["ok"], runs["failed_same"], runs["failing"]):
        assert f'{result.run_dir.parent.name}/{result.run_dir.name}/report.html' in page
    assert "report_demo/latest/report.html" in page
    assert "Bokeh" in page and "score" in page and "nested.auroc" in page


def test_cell_timeout_interrupts_the_kernel(tmp_path):
    t0 = time.monotonic()
    result = run_notebook(NB / "sleepy.ipynb", tmp_path, {"seconds": "60"}, cell_timeout=1.5)
    assert time.monotonic() - t0 < 30
    assert result.status == "timeout" and result.exit_code == EXIT_CODES["timeout"] == 3
    error = result.record["error"]
    assert error["ename"] == "TimeoutError" and "cell timeout of 1.5 s" in error["evalue"]
    assert error["cell_index"] == 1 and error["kernel_error"].startswith("KeyboardInterrupt")
    assert "time.sleep(seconds)" in error["source_excerpt"]
    page = result.report.read_text()
    assert 'data-status="timeout"' in page and "KeyboardInterrupt" in page
    assert (result.run_dir / "started").exists() and result.latest is None


def test_run_timeout_kills_a_kernel_that_ignores_interrupts(tmp_path):
    t0 = time.monotonic()
    result = run_notebook(NB / "sleepy.ipynb", tmp_path, {"seconds": "60", "ignore_interrupt": "true"},
                          timeout=4, interrupt_grace=1)
    assert time.monotonic() - t0 < 30
    assert result.status == "timeout"
    error = result.record["error"]
    assert "timeout of 4 s" in error["evalue"] and error["kernel_error"].startswith("DeadKernelError")
    assert error["cell_index"] == 1
    assert 'data-status="timeout"' in result.report.read_text()
    assert result.notebook.exists() and not (tmp_path / "sleepy" / LATEST).exists()


def test_same_second_runs_both_survive(tmp_path, monkeypatch):
    fixed = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(_run, "_utc_now", lambda: fixed)
    first = run_notebook(NB / "no_params.ipynb", tmp_path)
    second = run_notebook(NB / "no_params.ipynb", tmp_path)
    assert first.status == second.status == "ok"
    assert first.run_dir.name == f"20300102T030405Z-{first.record['params_hash']}"
    assert second.run_dir.name == first.run_dir.name + "-2"
    assert (first.run_dir / "run.json").exists() and (second.run_dir / "run.json").exists()
    assert os.readlink(tmp_path / "no_params" / LATEST) == second.run_dir.name
    assert first.record["parameters"] == {} and first.record["output_dir_injected"] is False


def test_publish_never_overwrites(tmp_path):
    stem = tmp_path / "nb"
    stem.mkdir()
    names = []
    for i in range(3):
        tmp = _run._make_partial_dir(stem, "20300101T000000Z-abcd0123")
        (tmp / "run.json").write_text(json.dumps({"i": i}))
        names.append(_run._publish(tmp, stem, "20300101T000000Z-abcd0123").name)
    assert names == ["20300101T000000Z-abcd0123", "20300101T000000Z-abcd0123-2", "20300101T000000Z-abcd0123-3"]
    assert [json.loads((stem / n / "run.json").read_text())["i"] for n in names] == [0, 1, 2]


def test_latest_falls_back_to_a_copy_without_symlinks(tmp_path, monkeypatch):
    stem = tmp_path / "nb"
    runs_ = []
    for i in range(3):
        d = stem / f"run{i}"
        d.mkdir(parents=True)
        (d / "report.html").write_text(f"report {i}")
        runs_.append(d)

    def no_symlink(*args, **kwargs):
        raise OSError("symlinks not supported here")

    with monkeypatch.context() as m:
        m.setattr(os, "symlink", no_symlink)
        _run._point_latest(stem, runs_[0])
        assert not (stem / LATEST).is_symlink() and (stem / LATEST / "report.html").read_text() == "report 0"
        _run._point_latest(stem, runs_[1])  # copy replaces copy
        assert (stem / LATEST / "report.html").read_text() == "report 1"
    _run._point_latest(stem, runs_[2])  # symlink replaces copy
    assert (stem / LATEST).is_symlink() and (stem / LATEST / "report.html").read_text() == "report 2"
    assert sorted(p.name for p in stem.iterdir()) == ["latest", "run0", "run1", "run2"]


# -- index (synthetic run folders, no kernel) ----------------------------------------------------------

def _fake_run(stem_dir: Path, i: int, status: str, t: datetime.datetime, metrics: dict | None) -> Path:
    name = f"{t:%Y%m%dT%H%M%SZ}-{i:08x}"
    d = stem_dir / name
    d.mkdir(parents=True)
    record = {"schema": 1, "notebook": f"notebooks/{stem_dir.name}.ipynb", "status": status,
              "parameters": {"n": i, "image_size": [256, 256]}, "started": t.isoformat().replace("+00:00", "Z"),
              "duration_seconds": 1.5 + i % 7,
              "error": None if status == "ok" else {"ename": "ValueError", "evalue": f"bad {i}"},
              "files": {"notebook": f"{stem_dir.name}.ipynb", "report": "report.html",
                        "metrics": "metrics.json" if metrics else None}}
    (d / "run.json").write_text(json.dumps(record))
    (d / "report.html").write_text("<html>report</html>")
    (d / f"{stem_dir.name}.ipynb").write_text("{}")
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("many")
    t0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    statuses = ["ok"] * 7 + ["failed", "timeout", "cancelled"]
    made = []
    for k, stem in enumerate(["01_quickstart", "02_tables", "03_clicks"]):
        for i in range(100):
            metrics = {"image_auroc": 0.8 + 0.001 * i, "fit_seconds": 2.0 + k, "detector": "padim",
                       "settings": {"image_size": [256, 256], "tile": 2}, "flag": True}
            if k == 2:
                metrics = {f"m{j}": float(j * i) for j in range(20)}  # more metrics than plotted
            made.append(_fake_run(out / stem, i, statuses[i % 10], t0 + datetime.timedelta(hours=i + 1000 * k),
                                  metrics if i % 13 else None))
    qs = out / "01_quickstart"
    os.symlink(made[98].name, qs / LATEST)
    # broken and half-deleted folders
    (made[1] / "run.json").unlink()
    (made[2] / "run.json").write_text("{ this is not json")
    (made[3] / "run.json").write_text("[1, 2, 3]")
    (made[4] / "report.html").unlink()
    (made[5] / "metrics.json").write_text("NaN garbage")
    shutil.rmtree(made[6])
    made[6].mkdir()  # an empty folder
    (made[7] / "run.json").write_text(json.dumps({"status": 42, "started": "yesterday", "parameters": "x",
                                                  "duration_seconds": "long", "files": []}))
    (qs / ".20300301T000000Z-deadbeef.1a2b3c4d.partial").mkdir()
    (qs / ".latest.1234.tmp").write_text("")
    (qs / "stray-file.txt").write_text("not a run")
    (out / "notes").mkdir()  # not a notebook folder
    (out / "notes" / "readme.txt").write_text("hello")
    (out / "README.md").write_text("reports")
    return out, made


def test_index_lists_every_run_and_tolerates_broken_folders(many_runs):
    out, made = many_runs
    t0 = time.perf_counter()
    index = write_index(out)
    seconds = time.perf_counter() - t0
    assert seconds < 15, f"write_index took {seconds:.1f} s for 300 runs"
    page = index.read_text()
    assert index == out / "index.html"
    assert_offline(page)
    for run in made:
        assert run.name in page
    assert page.count("<tr data-status=") == 301  # 300 runs + the incomplete one
    assert "run.json missing" in page and "run.json unreadable" in page
    assert "run.json does not hold an object" in page and "report.html missing" in page
    assert "metrics.json unreadable" in page and "unknown status" in page
    assert "still running, or stopped before it finished" in page
    assert "notes" not in re.sub(r"<[^>]+>", "", page.split("<nav>")[1].split("</nav>")[0])
    assert 'href="01_quickstart/latest/report.html"' in page
    assert f'href="01_quickstart/{made[10].name}/report.html"' in page
    assert f'01_quickstart/{made[4].name}/report.html' not in page  # no link to a missing report
    assert "image_auroc" in page and "fit_seconds" in page and "settings.tile" in page
    assert "8 more metrics not plotted" in page
    assert "Bokeh.embed" in page or "embed_items" in page


def test_collect_runs_orders_newest_first(many_runs):
    out, made = many_runs
    notebooks = collect_runs(out)
    assert sorted(notebooks) == ["01_quickstart", "02_tables", "03_clicks"]
    runs = notebooks["02_tables"]["runs"]
    assert [r["name"] for r in runs[:2]] == [made[199].name, made[198].name]
    assert notebooks["01_quickstart"]["latest"] == made[98].name
    statuses = {r["status"] for r in notebooks["01_quickstart"]["runs"]}
    assert {"ok", "failed", "timeout", "cancelled", "broken", "incomplete"} <= statuses


def test_index_of_an_empty_or_missing_folder(tmp_path):
    page = write_index(tmp_path).read_text()
    assert "No runs yet" in page and "Bokeh" not in page
    with pytest.raises(WorkbenchError, match="not found"):
        write_index(tmp_path / "missing")


def test_index_stays_self_contained_once_panel_components_are_imported(many_runs):
    """Importing Panel's ESM components (any Panel view does) makes Bokeh's INLINE resources
    name a Panel file by its Bokeh-server path ("static/extensions/panel/..."), which a page
    opened from disk cannot load; write_index inlines it from the installed package."""
    import widgets

    widgets.extension()
    out, _ = many_runs
    page = write_index(out).read_text()
    assert "static/extensions/" not in page
    assert offline_problems(page) == []
    # and the check itself would have caught it
    assert offline_problems('<script src="static/extensions/panel/x.js"></script>') != []


def test_cdn_assets_are_inlined_from_installed_packages():
    from importlib import metadata

    bokeh = metadata.version("bokeh")
    panel = metadata.version("panel")
    page = (f'var js_urls = ["https://cdn.bokeh.org/bokeh/release/bokeh-{bokeh}.min.js", '
            f'"https://cdn.holoviz.org/panel/{panel}/dist/panel.min.js"];\n'
            f'<link rel="stylesheet" href="https://cdn.holoviz.org/panel/{panel}/dist/css/loading.css?v={panel}">\n'
            '<script src="https://cdn.bokeh.org/bokeh/release/bokeh-0.0.1.min.js"></script>')
    assert len(offline_problems(page)) == 4
    inlined = inline_cdn_assets(page)
    assert inlined.count("data:text/javascript;base64,") == 2 and "data:text/css;base64," in inlined
    # another version's JavaScript is left alone (and reported)
    assert offline_problems(inlined) == [
        "loads from the network (fails offline): https://cdn.bokeh.org/bokeh/release/bokeh-0.0.1.min.js"]


# -- slow and browser -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def holoviews_run(tmp_path_factory):
    return run_notebook(NB / "holoviews_plot.ipynb", tmp_path_factory.mktemp("hv"), {"n_points": "30"})


@pytest.mark.slow
@pytest.mark.notebook
def test_holoviews_report_works_offline(holoviews_run):
    """hv.extension('bokeh') loads BokehJS from a CDN; the report inlines the installed copy."""
    result = holoviews_run
    assert result.status == "ok", result.record["error"]
    page = result.report.read_text()
    assert_offline(page)
    assert "cdn.bokeh.org" not in page and "cdn.holoviz.org" not in page
    assert result.record["warnings"] == [] and result.metrics["n_points"] == 30


@pytest.mark.browser
@pytest.mark.slow
def test_pages_render_offline_in_a_browser(tmp_path, many_runs, holoviews_run):
    """index.html and a HoloViews report, opened from disk with every network request blocked."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing (CI must install it)")
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _ = many_runs
    index = write_index(out)
    report = holoviews_run.report
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            user_data_dir=tmp_path / "chromium", executable_path=chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            for page_path, n_roots in ((index, 3), (report, 1)):
                page = browser.new_page()
                needed, errors = [], []
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                    ("file:", "data:", "blob:")) else (needed.append(route.request.url), route.abort()))
                # a missing file shows twice: as "Failed to load resource" on the console (without
                # the URL) and as a failed request (with it); keep the one that names the file.
                # Chromium may probe for a favicon beside the page; that is not the page's doing.
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                        and not msg.text.startswith("Failed to load resource") else None)
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("requestfailed", lambda req: None if req.url.endswith("/favicon.ico") else
                        errors.append(f"request failed: {req.url} ({req.failure})"))
                page.goto(page_path.as_uri())
                # Bokeh renders into shadow DOM: wait for its documents to be idle with their plots
                page.wait_for_function(
                    "() => window.Bokeh && Bokeh.documents.filter(d => d.is_idle)"
                    f".reduce((n, d) => n + d.roots().length, 0) >= {n_roots}",
                    timeout=30000)
                assert needed == [], needed
                assert errors == [], errors
                page.close()
        finally:
            browser.close()


def test_project_root(tmp_path, monkeypatch):
    from workbench.reports import project_root

    monkeypatch.delenv("WORKBENCH_PROJECT_ROOT", raising=False)
    nested = tmp_path / "proj" / "notebooks"
    nested.mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(nested)
    assert project_root() == tmp_path / "proj"  # nbmake runs notebooks in notebooks/
    monkeypatch.chdir(tmp_path)
    assert project_root() == REPO  # elsewhere (a scheduler's staging folder): this checkout
    monkeypatch.setenv("WORKBENCH_PROJECT_ROOT", str(nested))
    assert project_root() == nested
