"""ocrobin: fast, trainable neural binarization of document images.

``Binarizer(model=None).binarize(image)`` gives the ink probability of a page; ``threshold`` turns it
into a binary page. Both are imported on first use so that the command line starts quickly.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Binarizer", "threshold", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Binarizer", "threshold"):
        from . import infer

        return getattr(infer, name)
    raise AttributeError(f"module 'ocrobin' has no attribute {name!r}")
