"""Backbone-only versus end-to-end prediction throughput, interleaved in one process.

For each image detector: fit it, then alternate (a) the backbone forward of the stages the
detector uses on already-decoded, already-resized tensors (same input size, batch size and
threads as the detector) and (b) the detector's `predict` from file paths to `Scores`
(decoding, resizing, scoring, map smoothing and resizing included). Prints images/s of both
and their ratio per round, and the ratio of the totals over all rounds. Target: >= 0.85.

This machine's speed drifts by up to 2x within a minute (shared virtual CPUs), so the two
measurements alternate in short rounds on the same images, the side that goes first
alternates too, and the verdict uses the totals: drift then hits both sides alike.

    python benchmarks/throughput.py [--data bsdata|sample|DIR] [--threads 2] [--n 32] [--rounds 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import dataset, machine_line, set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bsdata")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=32, help="test images per round")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--detectors", default="padim,padim-shared,patchcore")
    args = ap.parse_args()
    set_threads(args.threads)
    print(machine_line(args.threads))

    from workbench.datasets import FolderDataset, read_image
    from workbench.detectors import make_detector
    from workbench.features import to_tensor

    ds = FolderDataset(dataset(args.data))
    all_paths = [str(s.path) for s in ds.test]
    print(f"data: {ds.root} ({args.n} test images per round, a different slice each round)")
    rows = []
    for name in args.detectors.split(","):
        det = make_detector(name, threads=args.threads)
        det.fit(ds)
        fx = det._extractor(cache=False)
        batch = fx._batch_for(det.input_size_)

        def chunk(r: int) -> list[str]:
            start = (r * args.n) % max(1, len(all_paths) - args.n + 1)
            return all_paths[start:start + args.n]

        def decoded(paths: list[str]) -> list[torch.Tensor]:
            tensors = [to_tensor(read_image(p), det.input_size_) for p in paths]
            return [torch.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]

        def backbone(batches: list[torch.Tensor]) -> float:
            t = time.perf_counter()
            for b in batches:  # padding to multiples of 32 (and tiling, if set) included
                fx.forward(b)
            return time.perf_counter() - t

        def end_to_end(paths: list[str]) -> float:
            t = time.perf_counter()
            det.predict(paths)  # from file paths to Scores
            return time.perf_counter() - t

        backbone(decoded(chunk(0)))  # warm up both
        end_to_end(chunk(0))
        total_bb = total_e2e = 0.0
        n_images = 0
        for r in range(args.rounds):
            paths = chunk(r)
            batches = decoded(paths)
            if r % 2 == 0:
                bb = backbone(batches)
                e2e = end_to_end(paths)
            else:
                e2e = end_to_end(paths)
                bb = backbone(batches)
            total_bb += bb
            total_e2e += e2e
            n_images += len(paths)
            print(f"{name:13s} round {r + 1}: backbone {len(paths) / bb:6.2f} img/s  "
                  f"end-to-end {len(paths) / e2e:6.2f} img/s  ratio {bb / e2e:.3f}", flush=True)
        rows.append((name, det.input_size_, batch, n_images / total_bb, n_images / total_e2e, total_bb / total_e2e))
    print()
    print(f"threads {args.threads}; totals over {args.rounds} rounds of {args.n} images")
    print(f"{'detector':13s} {'input':>10s} {'batch':>5s} {'backbone':>9s} {'end-to-end':>11s} {'ratio':>6s}  target >= 0.85")
    for name, size, b, bb, e2e, ratio in rows:
        print(f"{name:13s} {size[0]:>4d}x{size[1]:<5d} {b:>5d} {bb:7.2f}/s {e2e:9.2f}/s {ratio:6.3f}  "
              f"{'ok' if ratio >= 0.85 else 'MISSED'}")


if __name__ == "__main__":
    main()
