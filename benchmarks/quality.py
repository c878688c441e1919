"""Quality of the image detectors: image AUROC, F1-max, pixel AUROC, AUPRO@0.3.

On the generated sample and on BSData pitting (../shared/datasets), each detector with its
defaults, beside the anomalib 2.x figures measured on this kind of machine with the same
backbone (EfficientNet-Lite0, stride-8 and stride-16 stages), 256x256 input and split.
BSData's image labels have an appearance shortcut (soiling grows over time): weigh the
pixel metrics.

    python benchmarks/quality.py [--data sample,bsdata] [--detectors padim,padim-shared,patchcore] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import dataset, machine_line, set_threads

ANOMALIB = {  # bsdata_pitting, 256x256, Lite0 stride-8/16 (from the issue)
    "padim": {"image_auroc": 0.951, "pixel_auroc": 0.991, "aupro": 0.780, "images_per_second": 22.0, "fit_seconds": 30},
    "patchcore": {"image_auroc": 0.919, "pixel_auroc": 0.988, "aupro": 0.737, "images_per_second": 10.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sample,bsdata")
    ap.add_argument("--detectors", default="padim,padim-shared,patchcore")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()
    set_threads(args.threads)
    print(machine_line(args.threads))
    from workbench.evaluation import evaluate

    results = []
    for data in args.data.split(","):
        for name in args.detectors.split(","):
            t = time.perf_counter()
            m = evaluate(dataset(data), name, threads=args.threads).metrics
            m["wall_seconds"] = time.perf_counter() - t
            results.append((data, name, m))
            ref = ANOMALIB.get(name) if data == "bsdata" else None
            print(f"{data:7s} {name:13s} image AUROC {m['image_auroc']:.4f}  F1-max {m['image_f1_max']:.4f}  "
                  f"pixel AUROC {m['pixel_auroc']:.4f}  AUPRO {m['aupro']:.4f}  "
                  f"{m['images_per_second']:.2f} img/s  fit {m['fit_seconds']:.1f} s  "
                  f"input {m['settings']['input_size']}", flush=True)
            if ref:
                print(f"{'':7s} {'anomalib':13s} image AUROC {ref['image_auroc']:.4f}  {'':14s}  pixel AUROC "
                      f"{ref['pixel_auroc']:.4f}  AUPRO {ref['aupro']:.4f}  {ref['images_per_second']:.2f} img/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"data": d, "detector": n, **m} for d, n, m in results], fh, indent=2, default=str)


if __name__ == "__main__":
    main()
