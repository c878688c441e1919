"""Shared test set-up: one torch thread, a private feature cache, paths to real data."""

from __future__ import annotations

import os

import pytest

from _shared import IN_CI, REPO, SHARED_DATASETS, shared_dataset  # noqa: F401  (re-exported)


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
