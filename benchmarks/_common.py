"""Helpers shared by the benchmark scripts (run by hand, not in CI)."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "datasets").resolve()
BSDATA = SHARED / "images" / "bsdata_pitting"


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)


def machine_line(threads: int) -> str:
    load = os.getloadavg()[0]
    return (f"machine: {os.cpu_count()} cores, {threads} thread(s) for torch/BLAS/faiss, "
            f"load average {load:.2f} at start, Python {platform.python_version()}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sample_dir() -> Path:
    from workbench.datasets import make_sample

    return make_sample(REPO / "data" / "sample", if_missing=True)


def dataset(name: str) -> Path:
    if name == "sample":
        return sample_dir()
    if name == "bsdata":
        if not BSDATA.exists():
            raise SystemExit(f"{BSDATA} not found: the benchmark needs ../shared/datasets")
        return BSDATA
    return Path(name)
