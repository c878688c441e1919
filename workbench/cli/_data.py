"""``workbench data ...``: the generated sample dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    """Add ``data`` and its sub-command ``sample`` to the ``workbench`` parser."""
    data = subparsers.add_parser(
        "data",
        help="generate the sample dataset",
        description="Datasets the project generates itself.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    sample = sub.add_parser(
        "sample",
        help="generate the sample dataset (MVTec AD layout)",
        description=(
            "Generate the sample dataset: a brick-surface product, 240x320 gray PNGs, 50 train/good, "
            "12 test/good and 10 each of scratch, stain and patch defects with exact masks, built from "
            "scikit-image's CC0 textures. Same seed, same bytes. Writes only into an absent or empty "
            "folder, or one this command made (it holds sample_manifest.json)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sample.add_argument("--out", default="data/sample", metavar="DIR",
                        help="dataset folder, relative to the current directory")
    sample.add_argument("--if-missing", action="store_true",
                        help="do nothing when DIR already holds a complete, unmodified sample dataset")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.set_defaults(func=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    from workbench.datasets import SAMPLE_SPEC, make_sample, sample_is_complete

    already = args.if_missing and sample_is_complete(args.out, args.seed)
    path = make_sample(args.out, seed=args.seed) if not already else Path(args.out).expanduser().absolute()
    spec = SAMPLE_SPEC
    n_test = spec.n_test_good + spec.n_per_defect * len(spec.defect_kinds)
    state = "already complete" if already else "written"
    print(
        f"sample dataset {state}: {path} ({spec.n_train} train, {n_test} test images, "
        f"{spec.height}x{spec.width} gray; defects: {', '.join(spec.defect_kinds)})"
    )
    return 0
