"""One-click IoU of :class:`workbench.interactive.ClickSegmenter`, and seconds per click.

Protocol: every connected component of a defect mask is one object. It gets ONE positive
click at its natural point (the pixel farthest from its boundary: argmax of the Euclidean
distance transform, :func:`workbench.interactive.natural_click`) and the predicted mask is
compared with that component alone (IoU per component; a mask with three separate pits
counts three times). Datasets: the defective test images of the generated sample
(``data/sample``, 30 images, one component each) and of BSData pitting (``--bsdata N``
images spread evenly over the 167, default 40; components smaller than ``--min-area``
pixels are skipped and counted).

Timing: "first click" is the first predict on an image (backbone features + background
model + mask); "later click" is a second predict on the same image with another click
(features cached). Both are medians over the images, with the thread count printed.

    .venv/bin/python benchmarks/click_iou.py [--bsdata 40] [--threads 1] [--per-kind]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dataset, machine_line, set_threads  # noqa: E402


def run(name: str, samples, seg, min_area: int) -> dict:
    from workbench.interactive import mask_iou, natural_click

    ious, kinds, first, later = [], [], [], []
    skipped = 0
    for s in samples:
        image, mask = s.image(), s.mask()
        seg.clear_cache()
        comps = [c for c in _components(mask)]
        small = [c for c in comps if c.sum() < min_area]
        skipped += len(small)
        comps = [c for c in comps if c.sum() >= min_area]
        for j, comp in enumerate(comps):
            r, c = natural_click(comp)
            t0 = time.perf_counter()
            pred = seg.predict(image, [(r, c, 1)])
            dt = time.perf_counter() - t0
            (first if j == 0 else later).append(dt)
            ious.append(mask_iou(pred, comp))
            kinds.append(s.kind)
        if comps:  # a second click on the same image: features come from the cache
            r, c = natural_click(comps[0])
            t0 = time.perf_counter()
            seg.predict(image, [(r, c, 1), (0, 0, -1)])
            later.append(time.perf_counter() - t0)
    ious = np.asarray(ious)
    per_kind = {k: float(np.mean(ious[np.asarray(kinds) == k])) for k in sorted(set(kinds))}
    return {"name": name, "mean": float(ious.mean()), "median": float(np.median(ious)), "n": len(ious),
            "skipped": skipped, "per_kind": per_kind, "first": statistics.median(first),
            "later": statistics.median(later)}


def _components(mask):
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    return [lab == i for i in range(1, n + 1)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsdata", type=int, default=40, help="BSData pitting images (0 = skip)")
    ap.add_argument("--min-area", type=int, default=20, help="skip BSData components smaller than this")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-kind", action="store_true", help="also print the mean IoU per defect kind")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    from workbench.datasets import FolderDataset
    from workbench.interactive import ClickSegmenter

    print(machine_line(args.threads))
    seg = ClickSegmenter(threads=args.threads)
    print(f"segmenter: {seg!r}")
    runs = []
    ds = FolderDataset(dataset("sample"))
    runs.append(run("sample (30 defects)", [s for s in ds.test if s.label == 1], seg, 0))
    if args.bsdata:
        bs = FolderDataset(dataset("bsdata"))
        d = [s for s in bs.test if s.label == 1 and s.mask_path is not None]
        idx = np.linspace(0, len(d) - 1, min(args.bsdata, len(d))).round().astype(int)
        runs.append(run(f"bsdata_pitting ({len(idx)} of {len(d)} images)", [d[i] for i in idx], seg,
                        args.min_area))
    print(f"{'dataset':40s} {'n':>4s} {'mean IoU':>9s} {'median':>7s} {'first click s':>14s} {'later click s':>14s}")
    for r in runs:
        extra = f"  (skipped {r['skipped']} components < {args.min_area} px)" if r["skipped"] else ""
        print(f"{r['name']:40s} {r['n']:4d} {r['mean']:9.3f} {r['median']:7.3f} {r['first']:14.3f} "
              f"{r['later']:14.3f}{extra}")
        if args.per_kind:
            print("    per kind: " + ", ".join(f"{k} {v:.3f}" for k, v in r["per_kind"].items()))


if __name__ == "__main__":
    main()
