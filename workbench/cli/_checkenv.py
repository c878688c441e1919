"""Fail the install when a package that breaks beside the CPU torch wheel crept in.

Run by the Makefile after ``pip install``: torchvision and timm do not work beside
torch 2.13.0 CPU, and triton/nvidia-* mean a CUDA torch build was pulled in.
"""

from __future__ import annotations

import sys
from importlib import metadata

FORBIDDEN_PREFIXES = ("torchvision", "timm", "triton", "nvidia-", "nvidia_")


def main() -> int:
    found = sorted(
        {
            (dist.metadata["Name"] or "").lower()
            for dist in metadata.distributions()
            if (dist.metadata["Name"] or "").lower().startswith(FORBIDDEN_PREFIXES)
        }
    )
    if found:
        print(
            "error: these packages must not be installed beside the CPU torch wheel: "
            + ", ".join(found)
            + "\nRecreate the environment: make clean-venv && make test",
            file=sys.stderr,
        )
        return 1
    import torch

    if torch.version.cuda is not None:
        print(f"error: torch {torch.__version__} is a CUDA build; expected the CPU wheel", file=sys.stderr)
        return 1
    print(f"environment ok: torch {torch.__version__} (CPU), no torchvision/timm/triton/nvidia packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
