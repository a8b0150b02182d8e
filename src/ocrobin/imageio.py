"""Reading and writing page images: the one place that knows file formats, modes, DPI and EXIF.

Every reader returns grey pages as float32 arrays in [0, 1] (0 = black, 1 = white). Colour is the mean
of R, G and B, as the original ocrobin did; alpha is composited over white; 16-bit and float data are
scaled by their range; EXIF orientation is applied. Every writer writes to a temporary file beside the
target and renames it, so an output is either complete or absent.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from .exceptions import InputError, PageTooLargeError

#: Refuse pages above this many pixels per page (a clear error instead of running out of memory).
MAX_PIXELS = 1_000_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

#: TIFF tag XResolution: a page without it has no pixel density, whatever Pillow's ``info["dpi"]`` says.
_TIFF_X_RESOLUTION = 282

_UMASK = os.umask(0)
os.umask(_UMASK)

#: File extensions that directory and glob inputs pick up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pnm", ".pbm", ".pgm", ".ppm",
                  ".jp2", ".gif")


@dataclass
class Page:
    """One page of an input file.

    Attributes:
        data: the page as read, H×W grey (0 = black): uint8 for 8-bit sources, uint16 for 16-bit ones,
            float32 in [0, 1] for floating-point ones. Colour is the mean of R, G and B, rounded to the
            nearest level; alpha is composited over white. One byte per pixel for most pages.
        dpi: (x, y) resolution from the file, or None when it has none.
        index: page number within the file (0 for single-page files).
        count: number of pages in the file.
        streamed: the pixels were decoded strip by strip (no full-size decoded copy existed).
    """

    data: np.ndarray
    dpi: tuple[float, float] | None
    index: int = 0
    count: int = 1
    streamed: bool = False

    @property
    def gray(self) -> np.ndarray:
        """The page as float32 in [0, 1] (a new array of 4 bytes per pixel)."""
        return native_to_float(self.data)


def native_to_float(data: np.ndarray) -> np.ndarray:
    """Grey as read (uint8, uint16 or float) as float32 in [0, 1]."""
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255.0)
    if data.dtype == np.uint16:
        return data.astype(np.float32) / np.float32(65535.0)
    return np.asarray(data, np.float32)


def dpi_of(img: Image.Image) -> tuple[float, float] | None:
    """The (x, y) pixel density a PIL image carries in ``info["dpi"]``, None where it has no usable one."""
    dpi = img.info.get("dpi")
    if not dpi:
        return None
    tags = getattr(img, "tag_v2", None)
    if tags is not None and _TIFF_X_RESOLUTION not in tags:
        return None  # Pillow reports (1, 1) for a TIFF page without resolution tags: no density at all
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    if not (x > 0 and y > 0 and np.isfinite(x) and np.isfinite(y)):
        return None
    return (x, y)


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Convert a PIL image or a numpy array to float32 grey in [0, 1] (0 = black).

    Arrays: 2-D uint8 (0..255), uint16 (0..65535), bool (True = white) or float (taken as 0..1);
    3-D H×W×C with C in 1..4 (alpha composited over white, colour averaged).

    Raises:
        InputError: the shape, dtype or mode cannot be a page.
    """
    if isinstance(image, Image.Image):
        return _pil_to_gray(image)
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (2, 4):
        color, alpha = a[..., :-1], _scale(a[..., -1])
        g = _scale(color).mean(axis=2) if color.shape[2] > 1 else _scale(color[..., 0])
        return (g * alpha + (1.0 - alpha)).astype(np.float32)
    if a.ndim == 3 and a.shape[2] in (1, 3):
        return _scale(a).mean(axis=2).astype(np.float32)
    if a.ndim != 2:
        raise InputError(f"array of shape {a.shape} is not a page (expected H×W or H×W×C)")
    return _scale(a)


def _scale(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        lo = min(int(info.min), 0)
        return ((a.astype(np.float64) - lo) / (info.max - lo)).astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        if a.dtype == np.float32 and a.size and 0.0 <= a.min() and a.max() <= 1.0:
            return a  # already a page (NaN fails both tests): no copy of a possibly huge array
        out = np.nan_to_num(a.astype(np.float32), nan=1.0, posinf=1.0, neginf=0.0, copy=False)
        return np.clip(out, 0.0, 1.0, out=out)
    raise InputError(f"array of dtype {a.dtype} is not a page")


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode == "L":
        a = np.array(img, dtype=np.float32)
        a /= 255.0  # in place: a page of 100 MP would otherwise hold two float copies at once
        return a
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.uint16).astype(np.float32) / 65535.0
    if mode == "I":
        a = np.asarray(img, dtype=np.int64)
        top = 65535.0 if a.size and a.max() > 255 else 255.0
        return np.clip(a.astype(np.float32) / top, 0.0, 1.0)
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        top = 255.0 if a.size and np.nanmax(a) > 1.0 else 1.0
        return _scale(a / top)
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        return to_gray(np.asarray(img))
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return to_gray(np.asarray(img))


def bands_to_gray(a: np.ndarray) -> np.ndarray:
    """Grey of an H×W×C strip (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), in the strip's own dtype.

    Colour is the mean of R, G and B rounded to the nearest level; alpha is composited over white. Used
    for strips decoded by libvips and for whole images decoded by Pillow alike, so both give the same page.
    """
    if a.ndim == 2:
        return a
    c = a.shape[2]
    top = 65535 if a.dtype == np.uint16 else 255
    if c in (1, 2):
        g = a[..., 0]
    else:
        s = a[..., 0].astype(np.uint32) + a[..., 1] + a[..., 2]
        g = ((s + 1) // 3).astype(a.dtype)  # round(s / 3): s / 3 never ends in exactly .5
    if c in (2, 4):
        alpha = a[..., -1].astype(np.float32) / np.float32(top)
        f = g.astype(np.float32) * alpha + np.float32(top) * (1.0 - alpha)
        g = np.rint(f).astype(a.dtype)
    return g


def _open(path: Path) -> Image.Image:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from e
    if size == 0:
        raise InputError(f"{path}: empty file")
    return _pil_open(path, str(path))


def _pil_open(src: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        return Image.open(src)
    except UnidentifiedImageError as e:
        raise InputError(f"{name}: not an image or unsupported format") from e
    except Image.DecompressionBombError as e:
        raise InputError(f"{name}: page too large (limit {MAX_PIXELS:,} pixels)") from e
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e})") from e


def _pil_data(img: Image.Image) -> np.ndarray:
    """A decoded PIL frame as grey in its native depth (see :class:`Page`)."""
    mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L") if mode == "1" else img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.uint16)
    if mode in ("I", "F"):
        return _pil_to_gray(img)  # 32-bit integer or float pages: scaled to [0, 1] as floats
    if mode in ("P", "PA", "LA", "La", "RGBa", "RGBA"):
        return bands_to_gray(np.asarray(img.convert("RGBA") if mode != "LA" else img))
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return bands_to_gray(np.asarray(img))


#: (Pillow format, mode) of pages that libvips decodes strip by strip into a 1-byte-per-pixel page.
STREAMED = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"),
    "TIFF": ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"),
    "JPEG": ("L", "RGB"),
    "WEBP": ("L", "RGB", "RGBA"),
}
#: Decode at most about this many bytes of raw pixels at a time when streaming.
STRIP_BYTES = 8 << 20


def _vips() -> object | None:
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)  # no operation cache: nothing of a page outlives its reading
    return pyvips


def _streamable(img: Image.Image, index: int) -> bool:
    if img.format not in STREAMED or img.mode not in STREAMED[img.format]:
        return False
    # EXIF orientation: such a page is decoded and turned whole by Pillow. (A PNG's EXIF is looked at by
    # libvips instead: Pillow decodes the whole image to look for it.)
    if img.format != "PNG" and img.getexif().get(0x0112, 1) not in (1, None):
        return False
    return _vips() is not None


def _stream_frame(src: Path | bytes, fmt: str, index: int, size: tuple[int, int], name: str) -> np.ndarray | None:
    """Decode one frame strip by strip with libvips into a grey page; None where libvips cannot."""
    pyvips = _vips()
    assert pyvips is not None
    opts: dict[str, object] = {"access": "sequential", "fail_on": "error"}
    if fmt == "TIFF":
        opts["page"] = index
    try:
        v = (pyvips.Image.new_from_buffer(src, "", **opts) if isinstance(src, bytes)
             else pyvips.Image.new_from_file(str(src), **opts))
    except pyvips.Error:
        return None
    w, h = size
    dtype = {"uchar": np.uint8, "ushort": np.uint16}.get(v.format)
    if dtype is None or (v.width, v.height) != (w, h) or v.bands not in (1, 2, 3, 4):
        return None
    if v.get_typeof("orientation") and v.get("orientation") not in (0, 1):
        return None  # rotated by EXIF: decoded and turned by Pillow
    out = np.empty((h, w), dtype)
    region = pyvips.Region.new(v)
    rows = max(1, STRIP_BYTES // max(1, w * v.bands * np.dtype(dtype).itemsize))
    try:
        for y in range(0, h, rows):
            n = min(rows, h - y)
            strip = np.frombuffer(region.fetch(0, y, w, n), dtype).reshape(n, w, v.bands)
            out[y:y + n] = bands_to_gray(strip)
    except pyvips.Error as e:
        msg = str(e).strip().splitlines()
        raise InputError(f"{name}: corrupt or truncated image ({msg[-1] if msg else 'decode error'})") from e
    return out


def _load_frame(img: Image.Image, name: str, index: int, src: Path | bytes | None = None) -> Page:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(f"{name}: page {index + 1} too large ({w}×{h}, limit {MAX_PIXELS:,} pixels)")
    if w == 0 or h == 0:
        raise InputError(f"{name}: page {index + 1} has no pixels")
    dpi = dpi_of(img)
    try:
        if src is not None and _streamable(img, index):
            data = _stream_frame(src, str(img.format), index, (w, h), name)
            if data is not None:
                return Page(data, dpi, index, streamed=True)
        img.load()
        frame = ImageOps.exif_transpose(img) if index == 0 or img.getexif() else img
        return Page(_pil_data(frame), dpi, index)
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise InputError(f"{name}: page too large (limit {MAX_PIXELS:,} pixels)") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"{name}: corrupt or truncated image ({e})") from e


def _pages(img: Image.Image, name: str, src: Path | bytes) -> Iterator[Page]:
    with img:
        count = getattr(img, "n_frames", 1) or 1
        if count == 1:
            page = _load_frame(img, name, 0, src)
            img.close()  # free the decoded pixels before the caller works on the page
            yield page
            return
        for i, frame in enumerate(ImageSequence.Iterator(img)):
            page = _load_frame(frame, name, i, src)
            page.count = count
            yield page


def iter_pages(path: str | os.PathLike[str]) -> Iterator[Page]:
    """Yield every page of an image file (one for most formats, several for multi-page TIFF).

    PNG, TIFF, JPEG and WebP pages in the modes of :data:`STREAMED` are decoded strip by strip by libvips
    (``pyvips``), so a huge page costs its own size (1 byte per pixel) and no more; other files are decoded
    whole by Pillow.

    Raises:
        InputError: the file is missing, empty, not an image, corrupt, truncated or too large;
            the message starts with the file name.
    """
    p = Path(path)
    yield from _pages(_open(p), str(p), p)


def header_size(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the first page of image bytes, from the header alone (nothing is decoded).

    Raises:
        PageTooLargeError: more than ``max_pixels`` pixels (a decompression bomb among them).
        InputError: empty, not an image, or a header that cannot be read; the message names ``name``.
    """
    if not data:
        raise InputError(f"{name}: empty image data")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError:
        raise PageTooLargeError(f"{name}: page too large (limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image or unsupported format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"{name}: corrupt image header ({e})") from None
    if w * h > max_pixels:
        raise PageTooLargeError(f"{name}: page too large ({w}×{h}, limit {max_pixels:,} pixels)")
    return w, h


def decode_pages(data: bytes, name: str = "<bytes>") -> Iterator[Page]:
    """Like :func:`iter_pages`, for an image held in memory (a shard sample, an HTTP request body).

    Raises:
        InputError: see :func:`iter_pages`; the message names ``name``.
    """
    if not data:
        raise InputError(f"{name}: empty image data")
    yield from _pages(_pil_open(io.BytesIO(data), name), name, data)


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """The first page of an image file as float32 grey in [0, 1].

    Raises:
        InputError: see :func:`iter_pages`.
    """
    return next(iter_pages(path)).gray


def decode_gray(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode image bytes (e.g. a shard's ``gray.png``) to float32 grey in [0, 1] (the first page).

    Raises:
        InputError: empty, corrupt or not an image; the message names ``name``.
    """
    return next(decode_pages(data, name)).gray


def read_ground_truth(path: str | os.PathLike[str], text_white: bool = False) -> np.ndarray:
    """Read a ground-truth page as a boolean ink mask (True = text).

    DIBCO convention: text is black (below mid-grey). ``text_white`` flips it.

    Raises:
        InputError: see :func:`iter_pages`.
    """
    gray = read_gray(path)
    return gray >= 0.5 if text_white else gray < 0.5


def ink_to_image(ink: np.ndarray) -> Image.Image:
    """A 1-bit PIL image with ink black and paper white."""
    return Image.fromarray(~np.asarray(ink, dtype=bool))


def prob_to_image(prob: np.ndarray) -> Image.Image:
    """An 8-bit image of ink probability: value = floor(255 × p)."""
    p = np.clip(np.nan_to_num(np.asarray(prob, dtype=np.float32), nan=0.0), 0.0, 1.0)
    return Image.fromarray(np.floor(p * 255.0).astype(np.uint8), mode="L")


def encode_png(array: np.ndarray | Image.Image) -> bytes:
    """PNG bytes of a bool (1-bit), uint8 (grey or RGB) array or a PIL image."""
    return encode_image(array if isinstance(array, Image.Image) else Image.fromarray(np.asarray(array)), "png")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: zlib level of the PNGs we write. On 8-bit maps level 4 encodes in half the time of Pillow's default (6)
#: for files a few per cent larger; two-level pages (1-bit, or the shards' 8-bit 0/255 ``bin.png``) use
#: zlib's run-length strategy instead (:data:`PNG_RLE`).
PNG_LEVEL = 4
#: ``zlib.Z_RLE``: on a 1-bit 6.8-MP page 21 ms and 149 kB, against 53 ms and 160 kB at Pillow's default;
#: on the same page in 8 bits (0/255), 6.0 against 7.4 ms/MP at level 4 and a fifth smaller.
PNG_RLE = 3


def _save_options(img: Image.Image, fmt: str, dpi: tuple[float, float] | None,
                  two_level: bool = False) -> dict[str, object]:
    """Pillow save options: ``tif`` is CCITT Group 4 for 1-bit images, PNG fast (:data:`PNG_LEVEL`,
    :data:`PNG_RLE` for 1-bit and ``two_level`` images, unoptimised), DPI kept."""
    kwargs: dict[str, object] = {}
    if dpi:
        kwargs["dpi"] = (float(dpi[0]), float(dpi[1]))
    if fmt in ("tif", "tiff"):
        kwargs["format"] = "TIFF"
        if img.mode == "1":
            kwargs["compression"] = "group4"
    elif fmt == "png":
        kwargs["format"] = "PNG"
        kwargs["optimize"] = False
        kwargs["compress_level"] = PNG_LEVEL
        if img.mode == "1" or two_level:
            kwargs["compress_type"] = PNG_RLE
    else:
        kwargs["format"] = fmt.upper()
    return kwargs


def encode_image(img: Image.Image, fmt: str = "png", dpi: tuple[float, float] | None = None,
                 two_level: bool = False) -> bytes:
    """The bytes :func:`save_image` writes for ``img`` (what the batch tools and the HTTP service send);
    ``two_level``: an 8-bit image that holds two values only (encoded as fast as a 1-bit one)."""
    buf = io.BytesIO()
    img.save(buf, **_save_options(img, fmt.lower(), dpi, two_level))
    return buf.getvalue()


def save_image(img: Image.Image, path: str | os.PathLike[str], dpi: tuple[float, float] | None = None,
               fmt: str | None = None) -> None:
    """Save a PIL image atomically; ``fmt`` ``tif`` writes CCITT Group 4 for 1-bit images."""
    target = Path(path)
    fmt = (fmt or target.suffix.lstrip(".")).lower()
    with atomic_path(target) as tmp:
        img.save(tmp, **_save_options(img, fmt, dpi))


def write_binary(path: str | os.PathLike[str], ink: np.ndarray, dpi: tuple[float, float] | None = None,
                 fmt: str | None = None) -> None:
    """Write a 1-bit page (ink black) atomically as PNG or CCITT G4 TIFF, keeping ``dpi``."""
    save_image(ink_to_image(ink), path, dpi, fmt)


def write_prob(path: str | os.PathLike[str], prob: np.ndarray, dpi: tuple[float, float] | None = None) -> None:
    """Write the 8-bit ink-probability map atomically as PNG."""
    save_image(prob_to_image(prob), path, dpi, "png")
