"""Zero-shot (MuSc) and few-shot (prompt, K = 1, 4, 16) detectors beside full-shot PatchCore.

For each dataset, on its test split, prints image AUROC, pixel AUROC, AUPRO@0.3 and
throughput for:

* ``musc``         :class:`~workbench.detectors.MutualScoring` defaults; ``train/good`` is
                   ignored, the test images score each other (``musc raw``: the same run's
                   image scores before RsCIN re-scoring);
* ``prompt k=K``   :class:`~workbench.detectors.PromptDetector` ``shots=K`` (nested prompts,
                   seed 0), thresholds calibrated on a holdout of ``train/good``;
* ``patchcore``    ``PatchCore()`` defaults fitted on all of ``train/good`` (full shot).

Everything runs in this one process, one method after the other (MuSc first, so the peak
resident memory printed after it is its own; later rows show the peak so far), with ``--threads`` torch threads and a cold,
private feature cache. Throughput: test images per second of wall time of ``predict``
(MuSc does all its work there; the fit column is ``fit`` for the others), and per second of
CPU time of this process, which moves less than wall time when the machine is shared. The
load average before and after each method is printed: timings on shared machines vary up
to 2x between identical runs.

Usage::

    .venv/bin/python benchmarks/zero_shot.py                    # sample + BSData, 2 threads
    .venv/bin/python benchmarks/zero_shot.py --data sample --threads 1
    .venv/bin/python benchmarks/zero_shot.py --data bsdata --shots 1 4 --methods musc prompt

``sample`` is ``data/sample`` (generated if missing); ``bsdata`` is
``../shared/datasets/images/bsdata_pitting`` (read in place, never copied).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = {
    "sample": REPO / "data" / "sample",
    "bsdata": (REPO / ".." / "shared" / "datasets" / "images" / "bsdata_pitting").resolve(),
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _metrics(ds, scores) -> dict:
    import numpy as np

    from workbench.metrics import image_metrics, pixel_metrics

    labels = np.array([s.label for s in ds.test])
    masks = [s.mask() for s in ds.test]
    with_mask = [i for i, m in enumerate(masks) if m is not None]
    im = image_metrics(labels, scores.image_scores)
    pm = pixel_metrics([masks[i] for i in with_mask], [scores.anomaly_maps[i] for i in with_mask])
    return {"image_auroc": im["image_auroc"], "pixel_auroc": pm["pixel_auroc"], "aupro": pm["aupro"]}


def _run(name: str, ds, make, threads: int) -> list[dict]:
    """Fit (unless zero-shot) and predict; returns one or more result rows."""
    import numpy as np

    from workbench.detectors import MutualScoring

    det = make(threads)
    load0 = os.getloadavg()[0]
    n = len(ds.test)
    fit_s = 0.0
    c0 = time.process_time()
    if not isinstance(det, MutualScoring):
        t = time.perf_counter()
        det.fit(ds)
        fit_s = time.perf_counter() - t
    c1 = time.process_time()
    t = time.perf_counter()
    if isinstance(det, MutualScoring):
        result = det.score_batch(ds)
        scores = result.scores
    else:
        scores = det.predict(ds)
    pred_s = time.perf_counter() - t
    pred_cpu = time.process_time() - c1
    row = {"method": name, "fit_s": fit_s, "fit_cpu_s": c1 - c0, "predict_s": pred_s, "predict_cpu_s": pred_cpu,
           "img_per_s": n / pred_s, "img_per_cpu_s": n / pred_cpu, "load": (load0, os.getloadavg()[0]),
           "peak_rss_mb": _peak_rss_mb(), **_metrics(ds, scores)}
    rows = [row]
    if isinstance(det, MutualScoring):
        info = result.info
        row["note"] = (f"{info['references_per_image']} refs/img, {info['n_groups']} group(s), grid "
                       + "/".join("x".join(map(str, g)) for g in info["grid"].values()))
        raw = type(scores)(image_scores=np.asarray(result.raw_image_scores), anomaly_maps=scores.anomaly_maps)
        rows.append({**row, "method": "musc raw", **_metrics(ds, raw), "note": "same run, before RsCIN"})
    elif hasattr(det, "n_prompts_"):
        row["note"] = f"{det.n_prompts_} prompt(s), calibrated on {det.threshold_info_.get('n_images', 0)}"
    else:
        row["note"] = f"fitted on {det.n_fit_images_} images, bank {int(det.bank_.shape[0])}"
    return rows


def _print_table(title: str, rows: list[dict], threads: int) -> None:
    print(f"\n{title}  ({threads} torch thread{'s' * (threads != 1)})")
    head = (f"{'method':<12} {'img AUROC':>9} {'pix AUROC':>9} {'AUPRO':>7} {'img/s':>7} {'img/cpu-s':>9} "
            f"{'fit s':>7} {'load':>9} {'peak MB':>8}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:<12} {r['image_auroc']:>9.4f} {r['pixel_auroc']:>9.4f} {r['aupro']:>7.4f} "
              f"{r['img_per_s']:>7.2f} {r['img_per_cpu_s']:>9.2f} {r['fit_s']:>7.1f} "
              f"{r['load'][0]:>4.1f}-{r['load'][1]:<4.1f} {r['peak_rss_mb']:>8.0f}  {r.get('note', '')}")
    base = next((r for r in rows if r["method"] == "patchcore"), None)
    if base is not None:
        print("gap to full-shot PatchCore (method - patchcore): "
              + "; ".join(f"{r['method']}: img {r['image_auroc'] - base['image_auroc']:+.3f}, "
                          f"pix {r['pixel_auroc'] - base['pixel_auroc']:+.3f}, "
                          f"AUPRO {r['aupro'] - base['aupro']:+.3f}"
                          for r in rows if r is not base))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["sample", "bsdata"], choices=sorted(DATASETS))
    p.add_argument("--methods", nargs="+", default=["musc", "prompt", "patchcore"],
                   choices=["musc", "prompt", "patchcore"])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", action="store_true", help="use the normal feature cache (default: a cold private one)")
    args = p.parse_args(argv)

    tmp = None
    if not args.cache:
        tmp = tempfile.TemporaryDirectory(prefix="zero-shot-bench-")
        os.environ["WORKBENCH_CACHE_DIR"] = tmp.name
    import torch

    from workbench.datasets import FolderDataset, make_sample
    from workbench.detectors import MutualScoring, PatchCore, PromptDetector

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs visible, "
          f"load average at start {os.getloadavg()[0]:.1f}, resident memory after imports "
          f"{_current_rss_mb():.0f} MB")
    makers = []
    if "musc" in args.methods:
        makers.append(("musc", lambda th: MutualScoring(threads=th)))
    if "prompt" in args.methods:
        for k in args.shots:
            makers.append((f"prompt k={k}", lambda th, k=k: PromptDetector(shots=k, threads=th)))
    if "patchcore" in args.methods:
        makers.append(("patchcore", lambda th: PatchCore(threads=th)))
    for name in args.data:
        root = DATASETS[name]
        if name == "sample":
            make_sample(root, if_missing=True)
        if not root.exists():
            print(f"\n{name}: {root} is not available; skipped", file=sys.stderr)
            continue
        ds = FolderDataset(root)
        n_bad = sum(s.label for s in ds.test)
        rows = []
        for method, make in makers:
            print(f"  {name}: {method} ...", file=sys.stderr, flush=True)
            rows.extend(_run(method, ds, make, args.threads))
        _print_table(f"{name}: {root} ({len(ds.train)} train, {len(ds.test)} test, {n_bad} defective)",
                     rows, args.threads)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
