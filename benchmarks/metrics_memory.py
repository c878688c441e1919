"""Peak memory and time of the pixel metrics on a realistic evaluation set.

Builds ``--n-maps`` (300) random ``--size`` x ``--size`` (512) float32 anomaly maps with
blob-like ground-truth masks (seeded), then runs :func:`workbench.metrics.pixel_auroc`
and :func:`workbench.metrics.aupro`, each in its own child process so that each peak
resident set size (``ru_maxrss``) is its own. Prints, per metric: the RSS baseline after
imports, the RSS once the inputs exist, the peak, the time, and whether the peak stays
under the 1.5 GB budget (total process RSS, inputs included).

``--reference`` adds a child running scikit-learn's ``roc_auc_score`` on the concatenated
float64 pixels (the naive way), to compare its value and peak.

Usage::

    .venv/bin/python benchmarks/metrics_memory.py [--n-maps 300] [--size 512] [--reference]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

BUDGET_MB = 1500.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_inputs(n_maps: int, size: int, seed: int):
    """Masks with 0-3 elliptic blobs per image (about a third of the images without any)
    and float32 maps = smooth noise + white noise + a bump on most blobs."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((n_maps, size, size), dtype=bool)
    maps = np.empty((n_maps, size, size), dtype=np.float32)
    for i in range(n_maps):
        mask = masks[i]
        for _ in range(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1])):
            r, c = rng.uniform(0, size, size=2)
            a, b = rng.uniform(size / 40, size / 8, size=2)
            angle = rng.uniform(0, np.pi)
            dr, dc = rows - r, cols - c
            u = dr * np.cos(angle) + dc * np.sin(angle)
            v = -dr * np.sin(angle) + dc * np.cos(angle)
            mask |= (u / a) ** 2 + (v / b) ** 2 <= 1
        smooth = ndimage.zoom(rng.normal(size=(16, 16)), size / 16, order=1)
        bump = ndimage.uniform_filter(mask.astype(np.float32), size=9) * rng.uniform(0.0, 2.5)
        maps[i] = smooth + 0.5 * rng.normal(size=(size, size)) + bump
    return masks, maps


def run_child(metric: str, n_maps: int, size: int, seed: int) -> dict:
    import numpy as np

    from workbench.metrics import aupro, pixel_auroc

    if metric == "sklearn_roc_auc_score":
        from sklearn.metrics import roc_auc_score  # its import alone adds ~125 MB of RSS
    baseline = current_rss_mb()
    masks, maps = make_inputs(n_maps, size, seed)
    with_inputs = current_rss_mb()
    peak_before = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    if metric == "pixel_auroc":
        value = pixel_auroc(masks, maps)
    elif metric == "aupro":
        value = aupro(masks, maps, fpr_limit=0.3)
    else:  # the naive reference: every pixel concatenated as float64, then sorted
        value = roc_auc_score(masks.ravel(), maps.ravel().astype(np.float64))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "metric": metric, "value": float(value), "seconds": seconds, "cpu_seconds": cpu_seconds,
        "baseline_mb": baseline, "with_inputs_mb": with_inputs, "peak_before_mb": peak_before,
        "peak_mb": peak_rss_mb(),
        "inputs_mb": (masks.nbytes + maps.nbytes) / 2**20,
        "anomalous_fraction": float(masks.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-maps", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true",
                        help="also run sklearn roc_auc_score on the concatenated pixels")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.n_maps, args.size, args.seed)))
        return

    metrics = ["pixel_auroc", "aupro"] + (["sklearn_roc_auc_score"] if args.reference else [])
    print(f"{args.n_maps} maps of {args.size}x{args.size} float32, seed {args.seed}; "
          f"one child process per metric; {os.cpu_count()} cores, numpy work single-threaded "
          "(wall time varies with machine load; cpu s is steadier)")
    results = []
    for metric in metrics:
        out = subprocess.run(
            [sys.executable, __file__, "--child", metric, "--n-maps", str(args.n_maps),
             "--size", str(args.size), "--seed", str(args.seed)],
            check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = results[0]
    print(f"inputs: {first['inputs_mb']:.0f} MB (maps + masks), "
          f"{100 * first['anomalous_fraction']:.2f} % anomalous pixels")
    print(f"{'metric':<22} {'value':>10} {'wall s':>7} {'cpu s':>6} {'baseline':>9} {'+inputs':>8} "
          f"{'peak':>7} {'peak-inputs':>11}  peak < 1.5 GB")
    for r in results:
        print(f"{r['metric']:<22} {r['value']:>10.6f} {r['seconds']:>7.2f} {r['cpu_seconds']:>6.2f} {r['baseline_mb']:>6.0f} MB "
              f"{r['with_inputs_mb']:>5.0f} MB {r['peak_mb']:>4.0f} MB {r['peak_mb'] - r['with_inputs_mb']:>8.0f} MB  "
              f"{'yes' if r['peak_mb'] < BUDGET_MB else 'NO'}")
    if args.reference:
        diff = abs(results[0]["value"] - results[-1]["value"])
        print(f"|pixel_auroc - sklearn| = {diff:.2e}")


if __name__ == "__main__":
    main()
