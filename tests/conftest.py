"""Shared test set-up: one torch thread, a private feature cache, paths to real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (REPO / ".." / "shared" / "datasets").resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Point the feature cache at a temporary directory for the whole session."""
    path = tmp_path_factory.mktemp("workbench-cache")
    old = os.environ.get("WORKBENCH_CACHE_DIR")
    os.environ["WORKBENCH_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("WORKBENCH_CACHE_DIR", None)
    else:
        os.environ["WORKBENCH_CACHE_DIR"] = old


def shared_dataset(*parts: str) -> Path:
    """A folder of ../shared/datasets; skipped locally when absent, a failure under CI."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: CI must have ../shared/datasets")
        pytest.skip(f"{path} is not available on this machine")
    return path
