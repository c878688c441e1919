"""Paths to the real data sets in ../shared/datasets, for tests that need them.

A plain module (not conftest.py): test files import it by name, and a second conftest.py
(tests/notebooks/) would make ``from conftest import ...`` ambiguous.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (REPO / ".." / "shared" / "datasets").resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_dataset(*parts: str) -> Path:
    """A folder of ../shared/datasets; skipped locally when absent, a failure under CI."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: CI must have ../shared/datasets")
        pytest.skip(f"{path} is not available on this machine")
    return path
