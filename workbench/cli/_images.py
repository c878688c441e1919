"""``workbench evaluate | fit | predict``: image detectors on MVTec-layout folders."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import WorkbenchError

__all__ = ["register"]

log = logging.getLogger("workbench")

_EPILOG = "Run with --detector help to list the detectors."


def _add_detector_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, metavar="NAME",
                   help="image detector: padim, padim-shared, patchcore, musc, prompt (or 'help')")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2 (default lite0)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="model input size; default: chosen from the training images and recorded")
    p.add_argument("--tile", nargs="?", const="auto", default=None, metavar="H[xW]",
                   help="process large images tile by tile at native resolution (default tile 512x512)")
    p.add_argument("--shots", type=int, default=None, metavar="K", help="prompt detector: number of normal prompts")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other detector parameter, e.g. --param coreset_ratio=0.02 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _detector_params(args) -> dict:
    params: dict = {"random_state": args.seed}
    if args.backbone:
        params["backbone"] = args.backbone
    if args.image_size:
        params["image_size"] = tuple(args.image_size)
    if args.tile is not None:
        if args.tile == "auto":
            params["tile"] = "auto"
        else:
            parts = [int(v) for v in str(args.tile).lower().split("x")]
            params["tile"] = (parts[0], parts[-1])
    if args.threads is not None:
        params["threads"] = args.threads
    if args.shots is not None:
        params["shots"] = args.shots
    for item in args.param:
        if "=" not in item:
            raise WorkbenchError(f"--param expects NAME=VALUE; got {item!r}")
        name, value = item.split("=", 1)
        params[name.strip().replace("-", "_")] = _parse_value(value)
    return params


def _check_detector(name: str) -> bool:
    """Print the list for 'help'; raise for unknown or non-image detectors."""
    from workbench.detectors import REGISTRY, describe_detectors

    if name == "help":
        print("image detectors (workbench evaluate / fit / predict):")
        print(describe_detectors("image"))
        return False
    if name not in REGISTRY:
        raise WorkbenchError(f"unknown detector {name!r}; image detectors: "
                             f"{', '.join(i.name for i in REGISTRY.values() if i.kind == 'image')}")
    if REGISTRY[name].kind != "image":
        raise WorkbenchError(f"{name!r} is a vector detector; use `workbench evaluate-table FILE --detector {name}`")
    return True


def _make(name: str, params: dict, progress: bool):
    from workbench.detectors import get_detector

    klass = get_detector(name)
    try:
        return klass(progress=progress, **params)
    except TypeError as exc:
        raise WorkbenchError(f"detector {name!r}: {exc}") from exc


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", help="fit an image detector on train/good, score test/, write metrics",
        description="Fit on DATASET_DIR/train/good, score DATASET_DIR/test, compute image and pixel metrics. "
                    "Writes OUT/metrics.json, OUT/scores.csv and OUT/maps/ (overlays of the highest-scoring "
                    "images, false alarms and misses). Results of an earlier run in OUT are moved to "
                    "OUT/previous-<time>/.", epilog=_EPILOG)
    ev.add_argument("dataset_dir", metavar="DATASET_DIR", help="MVTec-layout folder")
    _add_detector_options(ev)
    ev.add_argument("--out", required=False, metavar="DIR", help="output folder")
    ev.add_argument("--save-model", metavar="PATH", help="also save the fitted detector")
    ev.add_argument("--overlays", type=int, default=8, metavar="N", help="overlays per group (default 8)")
    ev.set_defaults(func=_run_evaluate)

    fit = subparsers.add_parser("fit", help="fit an image detector on DATASET_DIR/train/good and save it",
                                epilog=_EPILOG)
    fit.add_argument("dataset_dir", metavar="DATASET_DIR", help="MVTec-layout folder (or a folder of normal images)")
    _add_detector_options(fit)
    fit.add_argument("--out", required=False, metavar="MODEL_PATH", help="where to save the model")
    fit.set_defaults(func=_run_fit)

    pr = subparsers.add_parser("predict", help="score images with a saved detector",
                               description="Score images or folders with a model saved by `workbench fit`. "
                                           "Writes OUT/scores.csv and OUT/maps/ (an overlay and a binary mask "
                                           "at the pixel threshold per image).")
    pr.add_argument("model", metavar="MODEL_PATH")
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    pr.add_argument("--out", required=True, metavar="DIR")
    pr.add_argument("--threads", type=int, default=None)
    pr.add_argument("--save-raw-maps", action="store_true", help="also write each float32 map as .npy")
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=_run_predict)


def _require_out(args, what: str) -> Path:
    if not args.out:
        raise WorkbenchError(f"--out {what} is required")
    return Path(args.out)


def _run_evaluate(args) -> int:
    if not _check_detector(args.detector):
        return 0
    out = _require_out(args, "DIR")
    from workbench.evaluation import evaluate

    det = _make(args.detector, _detector_params(args), progress=not args.no_progress)
    ev = evaluate(args.dataset_dir, det, out_dir=out, save_model=args.save_model, n_overlays=args.overlays)
    m = ev.metrics

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{m['detector']} on {m['dataset']}: {m['n_train']} train, {m['n_test']} test images")
    print(f"  image AUROC {f(m['image_auroc'])}  AP {f(m['image_ap'])}  F1-max {f(m['image_f1_max'])}")
    print(f"  pixel AUROC {f(m['pixel_auroc'])}  AUPRO@0.3 {f(m['aupro'])}")
    print(f"  fit {m['fit_seconds']:.1f} s, predict {m['images_per_second']:.2f} images/s, "
          f"peak RSS {m['peak_rss_mb']:.0f} MB, input {m['settings'].get('input_size')}")
    print(f"  results: {out / 'metrics.json'}, {out / 'scores.csv'}, {out / 'maps'}/")
    return 0


def _backup_existing(path: Path) -> None:
    if path.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        os.replace(path, backup)
        log.warning("%s existed; kept the old file as %s", path, backup)


def _run_fit(args) -> int:
    if not _check_detector(args.detector):
        return 0
    out = _require_out(args, "MODEL_PATH")
    from workbench.datasets import FolderDataset

    root = Path(args.dataset_dir)
    train = FolderDataset(root) if (root / "train").is_dir() else root
    det = _make(args.detector, _detector_params(args), progress=not args.no_progress)
    det.fit(train)
    _backup_existing(out)
    det.save(out)
    s = det.settings()
    print(f"{det.name} fitted on {s.get('n_fit_images')} images (input {s.get('input_size')}); "
          f"image threshold {s.get('image_threshold')}, pixel threshold {s.get('pixel_threshold')}")
    print(f"model: {out}")
    return 0


def _run_predict(args) -> int:
    import csv
    import io

    import numpy as np

    from workbench._io import atomic_write
    from workbench.datasets import FolderDataset
    from workbench.datasets._folder import _list_images
    from workbench.detectors import load_detector
    from workbench.visualize import overlay, save_png

    det = load_detector(args.model, threads=args.threads, progress=not args.no_progress)
    paths: list[Path] = []
    for inp in args.inputs:
        p = Path(inp)
        if p.is_dir():
            if (p / "test").is_dir() and (p / "train").is_dir():
                paths.extend(s.path for s in FolderDataset(p).test)
            else:
                found = _list_images(p)
                if not found:
                    raise WorkbenchError(f"{p} holds no images")
                paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise WorkbenchError(f"{p} does not exist")
    out = Path(args.out)
    maps_dir = out / "maps"
    maps_dir.mkdir(parents=True, exist_ok=True)
    scores = det.predict([str(p) for p in paths])
    t = scores.image_threshold
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "score", "anomalous", "image_threshold"])
    from workbench.datasets import read_image

    used: set[str] = set()
    for p, sc, amap in zip(paths, scores.image_scores, scores.anomaly_maps):
        w.writerow([str(p), repr(float(sc)), "" if t is None else int(sc >= t), "" if t is None else t])
        stem = p.stem
        while stem in used:  # same file name in two folders
            stem = f"{p.parent.name}_{stem}"
        used.add(stem)
        caption = f"{p.name}  score {sc:.3g}" + ("" if t is None else f" ({'>=' if sc >= t else '<'} {t:.3g})")
        save_png(maps_dir / f"{stem}_overlay.png",
                 overlay(read_image(p), amap, threshold=scores.pixel_threshold, caption=caption,
                         vmin=None if scores.pixel_threshold is None else 0.7 * scores.pixel_threshold))
        if scores.pixel_threshold is not None:
            save_png(maps_dir / f"{stem}_mask.png", ((amap >= scores.pixel_threshold) * 255).astype(np.uint8))
        if args.save_raw_maps:
            with atomic_write(maps_dir / f"{stem}_map.npy", "wb") as fh:
                np.save(fh, amap)
    with atomic_write(out / "scores.csv", "w") as fh:
        fh.write(buf.getvalue())
    n_bad = "" if t is None else f", {int((scores.image_scores >= t).sum())} at or above the image threshold"
    print(f"scored {len(paths)} images{n_bad}; {out / 'scores.csv'}, {maps_dir}/", file=sys.stdout)
    return 0
