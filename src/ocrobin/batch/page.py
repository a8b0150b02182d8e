"""One page's trip, whatever it comes from (file, shard, OCR-D, Ray, HTTP): model, then encoded outputs.

Outputs are encoded in memory and then written (atomically) or sent, so every entry point gives the same
bytes for the same page. The 1-bit result goes from the packed buffer of :class:`ocrobin.infer.PageResult`
to Pillow directly: a huge page never exists as a float or boolean array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..imageio import Page, encode_image
from ..infer import Binarizer, PageResult
from ..runtime import trim_freed_memory
from .common import Options


@dataclass
class Encoded:
    """A binarized page, encoded."""

    result: PageResult
    binary: bytes
    prob: bytes | None = None


def binary_image(result: PageResult) -> Image.Image:
    """The 1-bit page as a PIL image (ink black), made from the packed bits."""
    return Image.frombytes("1", (result.width, result.height), np.invert(result.ink).tobytes())


def encode_binary(result: PageResult, fmt: str = "png", dpi: tuple[float, float] | None = None) -> bytes:
    """The 1-bit page as PNG or CCITT G4 TIFF bytes, with ``dpi``."""
    return encode_image(binary_image(result), fmt, dpi)


def encode_prob(result: PageResult, dpi: tuple[float, float] | None = None) -> bytes:
    """The 8-bit ink probability (floor(255 × p)) as PNG bytes, with ``dpi``."""
    assert result.prob is not None
    img = Image.frombuffer("L", (result.width, result.height), result.prob, "raw", "L", 0, 1)
    return encode_image(img, "png", dpi)


def encode_training(result: PageResult) -> bytes:
    """The 1-bit page as an 8-bit PNG holding 0 (ink) and 255 (paper): the shards' ``bin.png``."""
    img = binary_image(result).convert("L")
    return encode_image(img, "png", None, two_level=True)


def binarize_page(binarizer: Binarizer, page: Page, opts: Options, shard: bool = False) -> Encoded:
    """Run one page and encode its outputs; the page's pixels are let go before encoding.

    Args:
        binarizer: the model.
        page: from :func:`ocrobin.imageio.iter_pages` or :func:`ocrobin.imageio.decode_pages`.
        opts: threshold, polarity, resize, format, whether to keep the probability.
        shard: encode for a shard (``bin.png`` 8-bit 0/255, no DPI) rather than for a file.
    """
    result = binarizer.run(page.data, t=opts.threshold, prob=opts.prob, polarity=opts.polarity, resize=opts.resize)
    page.data = np.zeros((0, 0), np.uint8)  # the caller's page no longer holds the pixels
    if shard:
        enc = Encoded(result, encode_training(result), encode_prob(result) if opts.prob else None)
    else:
        enc = Encoded(result, encode_binary(result, opts.fmt, page.dpi),
                      encode_prob(result, page.dpi) if opts.prob else None)
        result.prob = None
    trim_freed_memory()  # what the page's tiles and encoding left in the heap goes back before the next page
    return enc
