"""Workbench vector detectors vs PyOD's on the five ADBench "classical" tables.

Unsupervised protocol (DESIGN.md): fit on all rows, score all rows, AUROC against the
labels (seed 0). Each workbench detector runs beside the PyOD detector closest to it, on the
same rows, interleaved in one process (ours, PyOD, ours, PyOD, ...), so machine-load
changes hit both alike; the time is the median of ``--repeats`` fit+score runs and the
ratio is PyOD time / our time (> 1: ours is faster). The thread counts are printed.

    .venv/bin/python benchmarks/tabular.py [--data-dir DIR] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "tabular" / "adbench_classical"


def _pairs():
    """(row label, our detector factory, PyOD label, PyOD detector factory)."""
    from pyod.models.ecod import ECOD
    from pyod.models.gmm import GMM
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.mcd import MCD
    from pyod.models.pca import PCA

    from workbench.detectors import make_detector

    return [
        ("iforest", lambda: make_detector("iforest", random_state=0), "IForest", lambda: IForest(random_state=0)),
        ("knn", lambda: make_detector("knn"), "KNN", lambda: KNN()),
        ("lof", lambda: make_detector("lof"), "LOF", lambda: LOF()),
        ("gmm", lambda: make_detector("gmm", random_state=0), "GMM", lambda: GMM(random_state=0)),
        ("mahalanobis", lambda: make_detector("mahalanobis"), "MCD", lambda: MCD(random_state=0)),
        ("npca", lambda: make_detector("npca"), "PCA", lambda: PCA(random_state=0)),
        ("pca", lambda: make_detector("pca"), "PCA", lambda: PCA(random_state=0)),
        ("ecod", lambda: make_detector("ecod"), "ECOD", lambda: ECOD()),
        ("ecod paper", lambda: make_detector("ecod", aggregation="paper"), "ECOD", lambda: ECOD()),
    ]


def _run_ours(factory, X):
    det = factory()
    t0 = time.perf_counter()
    det.fit(X)
    scores = det.anomaly_score(X)
    return scores, time.perf_counter() - t0


def _run_pyod(factory, X):
    det = factory()
    t0 = time.perf_counter()
    det.fit(X)
    scores = det.decision_function(X)  # higher = more anomalous in PyOD
    return scores, time.perf_counter() - t0


def _thread_summary() -> str:
    from threadpoolctl import threadpool_info

    parts = [f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info()]
    try:
        import faiss

        parts.append(f"faiss={faiss.omp_get_max_threads()}")
    except ImportError:  # pragma: no cover
        pass
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per detector (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (default: leave the libraries' own setting)")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from workbench.metrics import image_auroc

    files = sorted(args.data_dir.glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
    if not files:
        print(f"no .npz files in {args.data_dir}", file=sys.stderr)
        return 1
    limits = threadpool_limits(args.threads) if args.threads else None
    print(f"threads: {_thread_summary()}  (torch not used); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print("protocol: unsupervised (fit on all rows, score all rows), seed 0; time = median of "
          f"{args.repeats} fit+score runs, interleaved ours/PyOD; ratio = PyOD time / our time\n")
    pairs = _pairs()
    summary: dict[str, list] = {label: [] for label, *_ in pairs}
    for path in files:
        data = np.load(path)
        X, y = data["X"].astype(np.float64), data["y"].astype(int)
        print(f"## {path.stem}  (n={X.shape[0]}, d={X.shape[1]}, outliers={int(y.sum())})")
        print(f"| {'detector':<17} | {'PyOD':<8} | AUROC ours | AUROC PyOD | ours s | PyOD s | ratio |")
        print(f"|{'-' * 19}|{'-' * 10}|-----------:|-----------:|-------:|-------:|------:|")
        for label, ours, pyod_label, pyod in pairs:
            t_ours, t_pyod = [], []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(args.repeats):
                    s_ours, t = _run_ours(ours, X)
                    t_ours.append(t)
                    s_pyod, t = _run_pyod(pyod, X)
                    t_pyod.append(t)
            a_ours, a_pyod = image_auroc(y, s_ours), image_auroc(y, s_pyod)
            m_ours, m_pyod = statistics.median(t_ours), statistics.median(t_pyod)
            summary[label].append((a_ours, a_pyod, m_ours, m_pyod))
            print(f"| {label:<17} | {pyod_label:<8} | {a_ours:10.3f} | {a_pyod:10.3f} | {m_ours:6.3f} | "
                  f"{m_pyod:6.3f} | {m_pyod / m_ours:5.2f} |", flush=True)
        print()
    print("## mean over the five sets")
    print(f"| {'detector':<17} | mean AUROC ours | mean AUROC PyOD | geo-mean ratio |")
    print(f"|{'-' * 19}|----------------:|----------------:|---------------:|")
    for label, rows in summary.items():
        arr = np.array(rows)
        ratio = float(np.exp(np.mean(np.log(arr[:, 3] / arr[:, 2]))))
        print(f"| {label:<17} | {arr[:, 0].mean():15.3f} | {arr[:, 1].mean():15.3f} | {ratio:14.2f} |")
    if limits is not None:
        limits.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
