"""Every notebook in notebooks/ runs top to bottom under ``pytest --nbmake`` with its defaults.

Each runs in its own pytest process, the way a user would check it (``pytest --nbmake
notebooks/X.ipynb``), with ``WORKBENCH_PROJECT_ROOT`` pointing at an empty temporary folder:
the notebooks' default relative paths (``data/sample``, ``reports/...``) resolve there, so the
default sample data is generated from scratch and nothing is written into this checkout.
The papermill tests (test_notebook_*.py, test_reports.py) check what the reports contain.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from _shared import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.timeout(1200)]


def test_every_notebook_is_collected():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_its_defaults(notebook, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()}
    env = dict(os.environ, WORKBENCH_PROJECT_ROOT=str(tmp_path), OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONWARNINGS="ignore::DeprecationWarning")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=900", "-p", "no:cacheprovider",
         "-q", str(notebook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, f"{notebook.name} failed under nbmake:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
    # nbmake executes a copy: the notebook in the repository is not rewritten
    assert {p: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()} == before
    # the defaults' outputs went to the temporary project root, not into the checkout
    assert any(tmp_path.rglob("metrics.json")), sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))[:50]
