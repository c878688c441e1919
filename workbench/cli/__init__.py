"""The ``workbench`` command line (contract in DESIGN.md; keep it stable).

Each area registers its sub-commands from its own module; handlers import heavy
libraries lazily so ``workbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from workbench._version import __version__
from workbench.errors import WorkbenchError

__all__ = ["main", "build_parser"]

# Modules that add sub-commands; each defines ``register(subparsers)``.
_COMMAND_MODULES = (
    "workbench.cli._data",
    "workbench.cli._images",
    "workbench.cli._table",
    "workbench.cli._report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Outlier Workbench: find what does not fit in images, tables and embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an area not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = args.func(args)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
