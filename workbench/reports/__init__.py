"""Reports: run a notebook with papermill into a run folder, and index the runs.

A report is a notebook (first code cell tagged ``parameters``) executed by
:func:`run_notebook` into ``OUT/<notebook stem>/<UTC timestamp>-<params hash>/``::

    <stem>.ipynb    the executed notebook (partial when the run did not succeed)
    report.html     self-contained page: code hidden unless show_code, images embedded,
                    no network needed; failed/timed-out/cancelled runs show a banner on top
    metrics.json    written by the notebook into its ``output_dir`` parameter (if declared)
    run.json        notebook, parameters, status, start/end, duration, error, versions, host

``OUT/<stem>/latest`` points at the newest successful run. :func:`write_index` writes
``OUT/index.html`` with every run and the trend of each numeric metric. The command line
is ``workbench report run`` / ``workbench report index``; see ``docs/scheduling.md``.

Notebooks run with the project root (nearest folder with a ``pyproject.toml`` at or above the
notebook) as working directory, so relative paths in them are relative to the repository
root; :func:`project_root` gives the same folder where the working directory is elsewhere.
"""

from workbench.reports._index import collect_runs, write_index
from workbench.reports._meta import project_root
from workbench.reports._params import NotebookParameter, ParameterError, notebook_parameters
from workbench.reports._run import EXIT_CODES, LATEST, STATUSES, RunResult, run_notebook

__all__ = [
    "run_notebook",
    "RunResult",
    "write_index",
    "collect_runs",
    "notebook_parameters",
    "NotebookParameter",
    "ParameterError",
    "project_root",
    "EXIT_CODES",
    "STATUSES",
    "LATEST",
]
