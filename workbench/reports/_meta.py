"""Where a notebook's project lives, and what a run records about its environment."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["find_project_root", "project_root", "environment_info", "git_info"]

#: Packages whose versions every run.json records (those installed).
KEY_PACKAGES = (
    "outlier-workbench", "papermill", "nbclient", "nbconvert", "nbformat", "ipykernel",
    "jupyter_client", "numpy", "scipy", "scikit-learn", "pandas", "torch", "holoviews",
    "bokeh", "panel", "matplotlib",
)


def find_project_root(start: str | os.PathLike) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``pyproject.toml``, or None."""
    path = Path(start).expanduser().absolute()
    if path.is_file():
        path = path.parent
    for folder in (path, *path.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def project_root() -> Path:
    """The repository root notebooks resolve relative paths from.

    ``workbench report run`` already executes notebooks with this as the working directory;
    this helper is for notebooks that must also work where the working directory is elsewhere
    (nbmake runs them in ``notebooks/``, jupyter-scheduler in its staging folder).

    Returns
    -------
    Path
        In order: ``$WORKBENCH_PROJECT_ROOT`` if set; the nearest folder at or above the
        current directory with a ``pyproject.toml``; the source checkout the ``workbench``
        package is imported from (an editable install); else the current directory.

    Examples
    --------
    >>> data_dir = project_root() / data_dir  # doctest: +SKIP
    """
    env = os.environ.get("WORKBENCH_PROJECT_ROOT")
    if env:
        return Path(env).expanduser().absolute()
    found = find_project_root(Path.cwd())
    if found is not None:
        return found
    import workbench

    checkout = Path(workbench.__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def git_info(root: Path) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` for the git checkout at ``root``."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--verify", "--quiet", "HEAD")
    dirty = None
    if commit:
        status = git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"commit": commit or None, "dirty": dirty}


def package_versions(names=KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment_info(root: Path) -> dict:
    """Project, Python, package and host facts recorded in ``run.json``."""
    from workbench._version import __version__

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = None
    return {
        "project": {"name": "outlier-workbench", "version": __version__, "root": str(root),
                    "git": git_info(root)},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": package_versions(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "cpu_count": os.cpu_count(), "user": user, "pid": os.getpid()},
    }
