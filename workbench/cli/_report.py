"""``workbench report run`` and ``workbench report index``: notebooks as scheduled reports.

Made for cron, systemd and Airflow: no prompts, logs on stderr, the run folder on stdout,
and exit codes that say what happened (see ``EXIT_CODES_HELP``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["register"]

log = logging.getLogger("workbench.reports")

EXIT_CODES_HELP = """\
exit codes:
  0    the notebook ran to the end (status ok); DIR/<stem>/latest now points at this run
  1    the notebook failed: a cell raised, or the kernel died (status failed)
  2    bad input, nothing was run: notebook missing or invalid, unknown parameter or wrong
       type, unknown kernel, unusable --out
  3    the run hit --timeout or --cell-timeout and was stopped (status timeout)
  130  cancelled by SIGINT (Ctrl-C) or SIGTERM (status cancelled)
Except for 2, a complete run folder is written in every case, with run.json saying what
happened and report.html showing it; only status ok moves DIR/<stem>/latest."""

RUN_DESCRIPTION = """\
Execute a notebook with papermill and write a new run folder
DIR/<notebook stem>/<UTC timestamp>-<params hash>/ holding the executed notebook, a
self-contained report.html (works offline and when mailed), metrics.json (written by the
notebook into its output_dir parameter, which is set to the run folder) and run.json.
Parameters are checked against the notebook's cell tagged 'parameters' and parsed to the type
of their default (int, float, bool as true/false/1/0, str, lists/tuples/dicts as YAML or JSON,
e.g. -p image_size "[512, 512]"). The kernel's working directory is the repository root (the
nearest folder at or above the notebook holding a pyproject.toml, else the notebook's folder),
so relative paths in notebooks are relative to it. Prints the run folder on stdout."""


def register(subparsers) -> None:
    """Add ``report run`` and ``report index`` to the ``workbench`` parser."""
    report = subparsers.add_parser(
        "report", help="run notebooks as reports (papermill) and index the runs",
        description="Notebooks as reports: run them into run folders, list the runs.")
    sub = report.add_subparsers(dest="report_command", metavar="SUBCOMMAND")
    sub.required = True

    run = sub.add_parser(
        "run", help="execute a notebook into a new run folder with report.html and run.json",
        description=RUN_DESCRIPTION, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to run")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a parameter (repeatable; overrides -f)")
    run.add_argument("-f", "--parameters-file", metavar="PARAMS_YAML",
                     help="YAML (or JSON) file mapping parameter names to values")
    run.add_argument("--timeout", type=float, metavar="S",
                     help="stop the run after S seconds in total (kernel start included); exit 3")
    run.add_argument("--cell-timeout", type=float, metavar="S",
                     help="stop the run when one cell takes more than S seconds; exit 3")
    run.add_argument("--show-code", action="store_true", help="keep code cells in report.html")
    run.add_argument("--kernel", metavar="NAME", help="kernel to use instead of the notebook's")
    run.add_argument("--log-output", action="store_true",
                     help="copy the notebook's stdout/stderr to the log (stderr)")
    run.add_argument("--index", action="store_true",
                     help="also rewrite DIR/index.html after the run (whatever its status)")
    run.add_argument("--out", metavar="DIR",
                     help="reports folder (created if missing), e.g. reports; required")
    run.add_argument("--list-parameters", action="store_true",
                     help="print the notebook's parameters (name, type, default, help) and exit")
    run.set_defaults(func=_run)

    index = sub.add_parser(
        "index", help="write DIR/index.html: every run, metric trends, links to the reports",
        description=("Write DIR/index.html listing every run of every notebook under DIR (status, "
                     "when, how long, parameters, headline metrics, links) with the trend of each "
                     "numeric metric across runs. Self-contained (works offline). Broken run folders "
                     "are listed as such. Prints the page's path on stdout."))
    index.add_argument("dir", metavar="DIR", help="the reports folder given to report run --out")
    index.set_defaults(func=_index)


def _read_parameters_file(path: str) -> dict:
    import yaml

    from workbench.errors import WorkbenchError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkbenchError(f"parameters file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read parameters file {p}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkbenchError(f"parameters file {p} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WorkbenchError(f"parameters file {p} must map names to values, found a {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def _run(args: argparse.Namespace) -> int:
    from workbench.reports import notebook_parameters, run_notebook
    from workbench.reports._params import describe_parameters

    if args.list_parameters:
        params = notebook_parameters(args.notebook)
        if params is None:
            print(f"{args.notebook} has no cell tagged 'parameters'")
        else:
            print(describe_parameters(params))
        return 0
    if not args.out:
        from workbench.errors import WorkbenchError

        raise WorkbenchError("--out DIR is required (the reports folder, e.g. --out reports)")
    values: dict = {}
    if args.parameters_file:
        values.update(_read_parameters_file(args.parameters_file))
    for name, value in args.parameters:
        values[name] = value
    result = run_notebook(
        args.notebook, args.out, values, timeout=args.timeout, cell_timeout=args.cell_timeout,
        show_code=args.show_code, kernel_name=args.kernel, log_output=args.log_output,
        progress=sys.stderr.isatty(),
    )
    if args.index:
        from workbench.reports import write_index

        try:
            write_index(args.out)
        except Exception:  # noqa: BLE001 - the run's own status decides the exit code
            log.exception("could not rewrite the index")
    print(result.run_dir)
    return result.exit_code


def _index(args: argparse.Namespace) -> int:
    from workbench.reports import write_index

    print(write_index(args.dir))
    return 0
