"""Backbone-only versus end-to-end prediction throughput, interleaved in one process.

For each image detector: fit it, then alternate (a) the backbone forward of the stages the
detector uses on already-decoded, already-resized tensors (same input size, batch size and
threads as the detector) and (b) the detector's `predict` from file paths to `Scores`
(decoding, resizing, scoring, map smoothing and resizing included). Prints images/s of both
and their ratio per round and the median ratio. Target: ratio >= 0.85.

    python benchmarks/throughput.py [--data bsdata|sample|DIR] [--threads 2] [--n 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import dataset, machine_line, set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bsdata")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=48, help="test images per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--detectors", default="padim,padim-shared,patchcore")
    args = ap.parse_args()
    set_threads(args.threads)
    print(machine_line(args.threads))

    from workbench.datasets import FolderDataset, read_image
    from workbench.detectors import make_detector
    from workbench.features import to_tensor
    from workbench.features._extractor import _pad_to_multiple

    ds = FolderDataset(dataset(args.data))
    paths = [str(s.path) for s in ds.test[: args.n]]
    print(f"data: {ds.root} ({len(paths)} test images per measurement)")
    rows = []
    for name in args.detectors.split(","):
        det = make_detector(name, threads=args.threads)
        det.fit(ds)
        fx = det._extractor(cache=False)
        batch = fx._batch_for(det.input_size_)
        tensors = [to_tensor(read_image(p), det.input_size_) for p in paths]
        batches = [torch.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]
        model = fx.model

        def backbone():
            with torch.inference_mode():
                for b in batches:
                    model(_pad_to_multiple(b), stages=fx.stages)

        def end_to_end():
            det.predict(paths)

        backbone()  # warm up both
        end_to_end()
        ratios = []
        for r in range(args.rounds):
            t = time.perf_counter()
            backbone()
            bb = len(paths) / (time.perf_counter() - t)
            t = time.perf_counter()
            end_to_end()
            e2e = len(paths) / (time.perf_counter() - t)
            ratios.append(e2e / bb)
            print(f"{name:13s} round {r + 1}: backbone {bb:6.2f} img/s  end-to-end {e2e:6.2f} img/s  "
                  f"ratio {e2e / bb:.3f}", flush=True)
        rows.append((name, det.input_size_, batch, statistics.median(ratios)))
    print()
    print(f"{'detector':13s} {'input':>10s} {'batch':>5s} {'median ratio':>12s}  target >= 0.85")
    for name, size, batch, ratio in rows:
        print(f"{name:13s} {size[0]:>4d}x{size[1]:<5d} {batch:>5d} {ratio:12.3f}  {'ok' if ratio >= 0.85 else 'MISSED'}")


if __name__ == "__main__":
    main()
