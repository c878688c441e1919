"""Fit an image detector on a dataset's normal images, score its test split, measure, write results.

Used by ``workbench evaluate`` and by the quickstart report. Output folder layout
(DESIGN.md)::

    metrics.json   detector, dataset, n_train, n_test, image_auroc, image_ap, image_f1_max,
                   pixel_auroc, aupro, fit_seconds, predict_seconds, images_per_second,
                   peak_rss_mb, settings{...every effective option...}
    scores.csv     path, kind, label, score
    maps/          overlays: top-scoring images, false alarms, misses (threshold shown)
"""

from __future__ import annotations

import csv
import io
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from workbench._io import atomic_write, atomic_write_json
from workbench.errors import WorkbenchError

__all__ = ["Evaluation", "evaluate", "peak_rss_mb", "write_overlays", "keep_previous_results"]

log = logging.getLogger(__name__)

#: files a previous evaluation left in an output folder (moved aside, never overwritten)
_RESULT_FILES = ("metrics.json", "scores.csv", "maps")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Evaluation:
    """Everything an evaluation produced (also what the quickstart report shows)."""

    metrics: dict
    detector: object
    dataset: object
    scores: object  # detectors.Scores on dataset.test
    labels: np.ndarray
    kinds: list[str]
    masks: list
    out_dir: Path | None = None
    overlays: dict[str, list[Path]] = field(default_factory=dict)


def keep_previous_results(out_dir: Path) -> Path | None:
    """Move results of an earlier run in ``out_dir`` into ``out_dir/previous-<UTC time>/``."""
    existing = [out_dir / name for name in _RESULT_FILES if (out_dir / name).exists()]
    if not existing:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    keep = out_dir / f"previous-{stamp}"
    keep.mkdir(parents=True)
    for p in existing:
        os.replace(p, keep / p.name)
    log.warning("%s held results of an earlier run; moved them to %s", out_dir, keep)
    return keep


def _masks_for(dataset) -> list:
    """Ground truth per test image: bool mask, or None when its kind has no masks."""
    return [s.mask() for s in dataset.test]


def evaluate(dataset, detector="patchcore", *, out_dir=None, save_model=None, n_overlays: int = 8,
             progress: bool = False, **params) -> Evaluation:
    """Fit ``detector`` on ``dataset.train``, score ``dataset.test``, compute the metrics.

    Parameters
    ----------
    dataset : FolderDataset or path
        MVTec-layout folder.
    detector : str or ImageDetector
        Registry name (``padim``, ``padim-shared``, ``patchcore``, ``musc``, ``prompt``) or an
        unfitted detector instance.
    out_dir : path or None
        Write ``metrics.json``, ``scores.csv`` and ``maps/`` there (an earlier run's files
        are moved to ``previous-<time>/`` first).
    save_model : path or None
        Also save the fitted detector there.
    n_overlays : int
        Overlays per group (top-scoring, false alarms, misses).
    **params
        Detector parameters (when ``detector`` is a name).
    """
    from workbench.datasets import FolderDataset
    from workbench.detectors import REGISTRY, make_detector
    from workbench.detectors._base import ImageDetector
    from workbench.metrics import image_metrics, pixel_metrics

    ds = dataset if isinstance(dataset, FolderDataset) else FolderDataset(dataset)
    if isinstance(detector, str):
        if detector in REGISTRY and REGISTRY[detector].kind != "image":
            raise WorkbenchError(f"{detector!r} is a vector detector; use `workbench evaluate-table` for tables")
        det = make_detector(detector, progress=progress, **params)
    else:
        det = detector
    if not isinstance(det, ImageDetector):
        raise WorkbenchError(f"{det!r} is not an image detector")
    if not ds.test:
        raise WorkbenchError(f"{ds.root} has no test images (test/<kind>/); nothing to evaluate")
    out_dir = None if out_dir is None else Path(out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        keep_previous_results(out_dir)

    t0 = time.perf_counter()
    det.fit(ds)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = det.predict(ds)
    predict_seconds = time.perf_counter() - t0

    labels = np.array([s.label for s in ds.test])
    kinds = [s.kind for s in ds.test]
    masks = _masks_for(ds)
    if labels.min() == labels.max():
        log.warning("the test split has only %s images: image metrics are undefined",
                    "normal" if labels[0] == 0 else "defective")
        im = {"image_auroc": None, "image_ap": None, "image_f1_max": None, "image_f1_threshold": None,
              "image_fpr95": None}
    else:
        im = image_metrics(labels, scores.image_scores)
    with_mask = [i for i, m in enumerate(masks) if m is not None]
    pm = {"pixel_auroc": None, "aupro": None}
    if any(labels[i] == 1 for i in with_mask):
        pm = pixel_metrics([masks[i] for i in with_mask], [scores.anomaly_maps[i] for i in with_mask])

    settings = det.settings()
    if hasattr(det, "fit_timings_"):
        settings["fit_timings"] = {k: round(v, 3) for k, v in det.fit_timings_.items()}
    settings["pixel_metrics_images"] = len(with_mask)
    metrics = {
        "detector": det.name,
        "dataset": str(ds.root),
        "n_train": len(ds.train),
        "n_test": len(ds.test),
        "image_auroc": im["image_auroc"],
        "image_ap": im["image_ap"],
        "image_f1_max": im["image_f1_max"],
        "image_fpr95": im["image_fpr95"],
        "pixel_auroc": pm["pixel_auroc"],
        "aupro": pm["aupro"],
        "fit_seconds": round(fit_seconds, 3),
        "predict_seconds": round(predict_seconds, 3),
        "images_per_second": round(len(ds.test) / predict_seconds, 3) if predict_seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "image_threshold": scores.image_threshold,
        "pixel_threshold": scores.pixel_threshold,
        "settings": settings,
    }
    ev = Evaluation(metrics=metrics, detector=det, dataset=ds, scores=scores, labels=labels,
                    kinds=kinds, masks=masks, out_dir=out_dir)
    if save_model is not None:
        det.save(save_model)
        metrics["model_path"] = str(save_model)
    if out_dir is not None:
        _write_scores_csv(out_dir / "scores.csv", ds, labels, scores.image_scores)
        ev.overlays = write_overlays(out_dir / "maps", ds.test, scores, labels, masks, n=n_overlays)
        metrics["peak_rss_mb"] = round(peak_rss_mb(), 1)
        atomic_write_json(out_dir / "metrics.json", metrics)
    return ev


def _write_scores_csv(path: Path, ds, labels, image_scores) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "kind", "label", "score"])
    for s, lab, sc in zip(ds.test, labels, image_scores):
        w.writerow([str(s.path), s.kind, int(lab), repr(float(sc))])
    with atomic_write(path, "w") as fh:
        fh.write(buf.getvalue())


def _display_range(scores) -> tuple[float, float]:
    """One colour range for every overlay of a run: from the pixel threshold (or the median
    of all maps) up to the 99.9th percentile of the highest map values."""
    maxima = np.array([float(m.max()) for m in scores.anomaly_maps])
    hi = float(np.percentile(maxima, 90))
    if scores.pixel_threshold is not None:
        lo = 0.7 * float(scores.pixel_threshold)
    else:
        lo = float(np.median([np.median(m) for m in scores.anomaly_maps]))
    return lo, max(hi, lo + 1e-6)


def write_overlays(folder, samples, scores, labels, masks, n: int = 8) -> dict[str, list[Path]]:
    """Overlay PNGs of the ``n`` highest-scoring images, false alarms and misses.

    False alarms are normal images, misses are defective images; with an image threshold
    they are those on the wrong side of it (worst first), without one the highest-scoring
    normal and lowest-scoring defective images. Returns ``{group: [paths]}``.
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    s = np.asarray(scores.image_scores)
    labels = np.asarray(labels)
    t = scores.image_threshold
    order = np.argsort(-s, kind="stable")
    good = [i for i in order if labels[i] == 0]
    bad = [i for i in order[::-1] if labels[i] == 1]
    groups = {
        "top": list(order[:n]),
        "false_alarm": [i for i in good if t is None or s[i] >= t][:n],
        "miss": [i for i in bad if t is None or s[i] < t][:n],
    }
    lo, hi = _display_range(scores)
    written: dict[str, list[Path]] = {}
    for group, idx in groups.items():
        written[group] = []
        for rank, i in enumerate(idx, 1):
            sample = samples[i]
            thr = "" if t is None else f" {'>=' if s[i] >= t else '<'} threshold {t:.3g}"
            caption = f"{sample.kind}/{sample.path.name}  score {s[i]:.3g}{thr}"
            img = overlay(sample.image(), scores.anomaly_maps[i], vmin=lo, vmax=hi,
                          threshold=scores.pixel_threshold, gt_mask=masks[i], caption=caption)
            path = folder / f"{group}_{rank:02d}_{sample.kind}_{sample.path.stem}.png"
            save_png(path, img)
            written[group].append(path)
    return written


from workbench.visualize import overlay, save_png  # noqa: E402  (kept at the end: light import)
