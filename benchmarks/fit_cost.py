"""PatchCore fit cost on BSData train/good: feature extraction vs coreset vs index, peak memory.

Features are extracted without the disk cache so the extraction time is real. Targets:
coreset + index <= 0.5 x feature extraction; whole fit <= 1.5 x feature extraction
(feature extraction counted for every image the fit reads, held-out calibration images
included).

    python benchmarks/fit_cost.py [--data bsdata|sample|DIR] [--threads 2] [--bank-size 2048]
"""

from __future__ import annotations

import argparse
import time

from _common import dataset, machine_line, peak_rss_mb, set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bsdata")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bank-size", type=int, default=2048)
    args = ap.parse_args()
    set_threads(args.threads)
    print(machine_line(args.threads))
    from workbench.datasets import FolderDataset
    from workbench.detectors import PatchCore

    ds = FolderDataset(dataset(args.data))
    base_rss = peak_rss_mb()
    det = PatchCore(cache=False, threads=args.threads, bank_size=args.bank_size)
    t = time.perf_counter()
    det.fit(ds)
    total = time.perf_counter() - t
    ft = det.fit_timings_
    extraction = ft["features_seconds"] + ft["calibration_features_seconds"]
    model = det.coreset_seconds_ + det.index_seconds_
    print(f"data: {ds.root}: {det.n_fit_images_} images fitted, {det.threshold_info_['n_images']} held out, "
          f"input {det.input_size_[0]}x{det.input_size_[1]}, {det.n_patches_} patches -> bank {det.bank_.shape[0]}")
    print(f"feature extraction {extraction:7.1f} s  (fit images {ft['features_seconds']:.1f} s, "
          f"held-out images {ft['calibration_features_seconds']:.1f} s)")
    print(f"coreset            {det.coreset_seconds_:7.1f} s")
    print(f"index              {det.index_seconds_:7.1f} s")
    print(f"whole fit          {total:7.1f} s  (calibration scoring {ft['calibration_seconds'] - ft['calibration_features_seconds']:.1f} s)")
    print(f"peak RSS           {peak_rss_mb():7.0f} MB (before fit {base_rss:.0f} MB)")
    print(f"(coreset + index) / extraction = {model / extraction:.3f}   target <= 0.5  "
          f"{'ok' if model / extraction <= 0.5 else 'MISSED'}")
    print(f"whole fit / extraction         = {total / extraction:.3f}   target <= 1.5  "
          f"{'ok' if total / extraction <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
