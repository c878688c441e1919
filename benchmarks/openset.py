"""Open-set recognition: per-class GMMs on the classifier's latent space vs max softmax probability.

Two evaluations, each printed as a table (AUROC: unknown rows positive vs known test rows):

* WM-811K wafer maps (../shared/datasets/wafer/wm811k_subset), leave-one-class-out: the
  known classes are the other classes with >= 10 maps (Near-full, 1 map, is only ever the
  unknown); known maps are split 3:1 into train/test by lot (no lot on both sides).
* scikit-learn digits: train on 0-5 (70 % of them, stratified), test on the other 30 % and
  on every 6, 7, 8, 9 (one row per unknown digit, then all together).

"ours" is ``OpenSetClassifier().novelty_score`` (smallest Mahalanobis distance to a
per-class mixture component on the MLP's last hidden layer); "MSP" is ``1 - max softmax``
of the *same* fitted classifier. "recall@thr" and "known rej." are the shares of unknown
and known test rows ``predict`` rejects at the threshold set for 5 % FPR on held-out known
training rows. The wafer set is tiny (285 maps), so the wafer table is repeated for seeds
0, 1, 2 (split and model) and their mean is printed too.

    .venv/bin/python benchmarks/openset.py [--wafer PATH] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WAFER = REPO.parent / "shared" / "datasets" / "wafer" / "wm811k_subset" / "wafer_maps.npz"

HEADER = ("| unknown   | known classes                    | n train | n known test | n unknown | closed-set acc | "
          "AUROC ours | AUROC MSP | recall@thr | known rej. |")
RULE = "|-----------|----------------------------------|--------:|-------------:|----------:|---------------:|" \
       "-----------:|----------:|-----------:|-----------:|"


def _row(r: dict) -> str:
    known = ", ".join(r["known"])
    return (f"| {r['held_out']:<9} | {known:<32} | {r['n_train']:7d} | {r['n_known_test']:12d} | "
            f"{r['n_unknown']:9d} | {r['closed_set_accuracy']:14.3f} | {r['auroc']:10.3f} | "
            f"{r['auroc_msp']:9.3f} | {r['unknown_recall']:10.3f} | {r['known_rejected']:10.3f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wafer", type=Path, default=DEFAULT_WAFER)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_info

    from workbench.openset import OpenSetClassifier, evaluate_open_set, leave_one_class_out, load_wafer_maps

    threads = ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    print(f"threads: {threads} (fits run single-threaded by design; torch not used); "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"estimator: {OpenSetClassifier()!r} (defaults)\n")

    X, y, names, lots = load_wafer_maps(args.wafer)
    print(f"## WM-811K wafer maps, leave-one-class-out ({len(y)} maps, {X.shape[1]} polar features, "
          f"split by lot)\n")
    per_seed = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        rows = leave_one_class_out(OpenSetClassifier(random_state=seed), X, y, groups=lots, class_names=names,
                                   random_state=seed)
        per_seed.append(rows)
        print(f"seed {seed} ({time.perf_counter() - t0:.1f} s for {len(rows)} folds)\n")
        print(HEADER)
        print(RULE)
        for r in rows:
            print(_row(r))
        print()
    print(f"mean over seeds {args.seeds}:\n")
    print("| unknown   | closed-set acc | AUROC ours | AUROC MSP |")
    print("|-----------|---------------:|-----------:|----------:|")
    for i, name in enumerate(r["held_out"] for r in per_seed[0]):
        vals = np.array([[rows[i]["closed_set_accuracy"], rows[i]["auroc"], rows[i]["auroc_msp"]] for rows in per_seed])
        m = vals.mean(0)
        print(f"| {name:<9} | {m[0]:14.3f} | {m[1]:10.3f} | {m[2]:9.3f} |")
    print("(Near-full has 1 map: its AUROC is the rank of that one map among the known test maps.)\n")

    digits = load_digits()
    Xd, yd = digits.data, digits.target
    known = yd < 6
    X_tr, X_te, y_tr, y_te = train_test_split(Xd[known], yd[known], test_size=0.3, stratify=yd[known],
                                              random_state=0)
    t0 = time.perf_counter()
    est = OpenSetClassifier(random_state=0).fit(X_tr, y_tr)
    fit_s = time.perf_counter() - t0
    print(f"## digits: known 0-5 ({len(y_tr)} train rows, fit {fit_s:.1f} s), unknown 6-9\n")
    print(HEADER)
    print(RULE)
    for u in [6, 7, 8, 9, None]:
        X_unknown = Xd[yd >= 6] if u is None else Xd[yd == u]
        r = evaluate_open_set(est, X_te, y_te, X_unknown)
        print(_row({"held_out": "6-9" if u is None else str(u), "known": ["0-5"], "n_train": len(y_tr), **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
