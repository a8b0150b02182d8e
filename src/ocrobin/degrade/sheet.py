"""Sheet effects: what happened to the printed sheet (light-on-dark regions, stains, folds, lighting)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..render import gaussian_blur, smooth_noise
from .registry import Effect, register, strength, uniform


def _draw_inverted(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = INVERTED.ranges
    boxes = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        bh = int(h * uniform(rng, R["size_frac"]))
        bw = int(w * uniform(rng, R["size_frac"]))
        y0, x0 = int(rng.integers(0, max(1, h - bh))), int(rng.integers(0, max(1, w - bw)))
        boxes.append([y0, x0, max(1, bh), max(1, bw)])
    return {
        "boxes": boxes,
        "dark": uniform(rng, R["dark"]),
        "light": uniform(rng, R["light"]),
        "soft": float(rng.uniform(0.0, 3.0)),
    }


def quiet_line(profile: np.ndarray, at: int, reach: int) -> int:
    """The index within ``reach`` of ``at`` where ``profile`` (ink per row or column) is least, the nearest of
    equals: where a printed band's edge falls between lines of text instead of through them."""
    lo, hi = max(0, at - reach), min(len(profile), at + reach + 1)
    if hi <= lo:
        return at
    idx = np.arange(lo, hi)
    return int(idx[np.lexsort((np.abs(idx - at), profile[lo:hi]))[0]])


#: A row (column) is quiet when its ink adds up to at most this share of its length: no letter crosses it
#: (a share of the page's busiest row would let rows through a sparse line of large type pass).
QUIET = 0.004


def band_edge(profile: np.ndarray, at: int, reach: int, outward: int, length: int) -> int:
    """Where a band's edge drawn at ``at`` is set: the quietest row within ``reach`` (:func:`quiet_line`);
    when even that one cuts text (it is not :data:`QUIET`; ``length``: the rows' length), the nearest quiet
    row further out in the direction ``outward`` (−1: up or left, +1: down or right), up to a quarter of
    the page, so that a band thinner than a line of text grows to hold the line instead of cutting its
    letters in half."""
    i = quiet_line(profile, at, reach)
    quiet = QUIET * length
    if profile[i] <= quiet:
        return i
    far = at + outward * max(reach, len(profile) // 4)
    lo, hi = sorted((at, min(max(far, 0), len(profile) - 1)))
    rows = np.flatnonzero(profile[lo:hi + 1] <= quiet) + lo
    if rows.size == 0:
        return i
    return int(rows[np.argmin(np.abs(rows - at))])


def snap_box(alpha: np.ndarray, box: list[int]) -> list[int]:
    """A band's box with its two long edges moved to the quietest rows (columns, for a band down the page)
    within a third of its height (width), as a reverse-printed bar is set around its own lines instead of
    cutting through the text; a band across the page goes further out where no row there is quiet
    (:func:`band_edge`)."""
    y0, x0, bh, bw = box
    h, w = alpha.shape
    if bw >= w:  # across the page: move the top and bottom edges
        rows = alpha.sum(axis=1)
        a, b = band_edge(rows, y0, bh // 3, -1, w), band_edge(rows, y0 + bh, bh // 3, 1, w)
        return [a, x0, max(1, b - a), bw]
    # down the page: the quietest columns near the drawn edges (lines of text run across every column, so
    # none need be quiet; growing the band to one would only make it wider)
    cols = alpha.sum(axis=0)
    a, b = quiet_line(cols, x0, bw // 3), quiet_line(cols, x0 + bw, bw // 3)
    return [y0, a, bh, max(1, b - a)]


def invert_boxes(st: Any, p: dict[str, Any]) -> None:
    """Turn the boxes of ``p`` into light text on a dark ground (the ground truth keeps the text as ink);
    with ``snap`` the boxes' edges first move to where they cut the least text (:func:`snap_box`)."""
    pl = float(st.paper_c.mean())
    if st.inverted_mask is None:
        st.inverted_mask = np.zeros((st.h, st.w), np.float32)
    for box in p["boxes"]:
        y0, x0, bh, bw = snap_box(st.alpha, box) if p.get("snap") else box
        region = st.v[:, y0 : y0 + bh, x0 : x0 + bw]
        grain = st.paper[:, y0 : y0 + bh, x0 : x0 + bw].mean(axis=0) / max(pl, 1e-3)  # keep the paper's texture
        a = st.alpha[y0 : y0 + bh, x0 : x0 + bw]
        inv = (p["dark"] + (p["light"] - p["dark"]) * a) * grain
        m = np.ones((bh, bw), np.float32)
        if p["soft"] > 0.3:
            m = gaussian_blur(np.pad(m, 4), p["soft"])[4:-4, 4:-4]
        st.v[:, y0 : y0 + bh, x0 : x0 + bw] = region * (1.0 - m) + inv[None] * m
        st.inverted_mask[y0 : y0 + bh, x0 : x0 + bw] = np.maximum(st.inverted_mask[y0 : y0 + bh, x0 : x0 + bw], m)
        st.inverted_boxes.append([y0, x0, bh, bw])


INVERTED = register(Effect(
    "inverted", {"size_frac": (0.15, 0.6), "dark": (0.05, 0.35), "light": (0.55, 0.95)}, _draw_inverted,
    hooks={"sheet": invert_boxes}, doc="light-on-dark regions (banners, negatives, dark labels)",
))



def _draw_inverted_band(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = INVERTED_BAND.ranges
    if rng.random() < 0.8:  # a heading band across the page
        bh = max(1, int(h * uniform(rng, R["size_frac"])))
        box = [int(rng.integers(0, max(1, h - bh))), 0, bh, w]
    else:  # a band down the page
        bw = max(1, int(w * uniform(rng, R["size_frac"])))
        box = [0, int(rng.integers(0, max(1, w - bw))), h, bw]
    return {
        "boxes": [box],
        "dark": uniform(rng, R["dark"]),
        "light": uniform(rng, R["light"]),
        "soft": float(rng.uniform(0.0, 2.0)),
        "snap": True,
    }


INVERTED_BAND = register(Effect(
    "inverted_band", {"size_frac": (0.06, 0.25), "dark": (0.05, 0.35), "light": (0.55, 0.95)}, _draw_inverted_band,
    hooks={"sheet": invert_boxes}, doc="a reverse-printed band across (or down) the page: light text on dark",
))

def _draw_stains(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = STAINS.ranges
    side = min(h, w)
    lo, hi = R["count"]
    n = int(rng.integers(lo, hi + 1))
    blobs = []
    for _ in range(n):
        blobs.append(
            {
                "y": float(rng.uniform(-0.1, 1.1) * h),
                "x": float(rng.uniform(-0.1, 1.1) * w),
                "radius": uniform(rng, R["radius_frac"]) * side,
                "darkness": strength(rng, R["darkness"], k),
                "rim": uniform(rng, R["rim"]) if rng.random() < 0.5 else 0.0,
                "irregular": float(rng.uniform(0.05, 0.4)),
                "aspect": float(rng.uniform(0.6, 1.6)),
            }
        )
    return {"blobs": blobs}


def stain_field(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """How much light each pixel's stains absorb (0 = none)."""
    keep = np.ones((h, w), np.float32)  # product of (1 - stain)
    for b in p["blobs"]:
        r = b["radius"]
        ry, rx = r * math.sqrt(b["aspect"]), r / math.sqrt(b["aspect"])
        y0, y1 = int(max(0, b["y"] - 1.3 * ry)), int(min(h, b["y"] + 1.3 * ry + 1))
        x0, x1 = int(max(0, b["x"] - 1.3 * rx)), int(min(w, b["x"] + 1.3 * rx + 1))
        if y1 <= y0 or x1 <= x0:
            rng.standard_normal(1)  # keep the stream the same length whether or not the blob is visible
            continue
        yy = (np.arange(y0, y1, dtype=np.float32) - b["y"]) / ry
        xx = (np.arange(x0, x1, dtype=np.float32) - b["x"]) / rx
        d = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
        d = d * (1.0 + b["irregular"] * smooth_noise(rng, (y1 - y0, x1 - x0), max(3.0, r / 3), octaves=3) * 0.5)
        body = np.clip((1.0 - d) / 0.25, 0.0, 1.0)
        body = body * (0.75 + 0.25 * np.clip(1.0 - d, 0.0, 1.0))
        s = b["darkness"] * (body * (1.0 - 0.5 * b["rim"]) + b["rim"] * np.exp(-(((d - 1.0) / 0.05) ** 2)))
        keep[y0:y1, x0:x1] *= 1.0 - np.clip(s, 0.0, 0.95)
    return 1.0 - keep


#: stains absorb more blue: brownish
STAIN_TINT = np.array([0.75, 0.9, 1.1], np.float32)


def _stains(st: Any, p: dict[str, Any]) -> None:
    s = stain_field(p, st.h, st.w, st.rng)
    tint = STAIN_TINT if st.channels == 3 else np.ones(1, np.float32)
    st.v = st.v * (1.0 - s[None] * tint[:, None, None])


STAINS = register(Effect(
    "stains", {"count": (1, 6), "radius_frac": (0.03, 0.35), "darkness": (0.05, 0.3), "rim": (0.0, 1.0)},
    _draw_stains, hooks={"sheet": _stains}, doc="water and foxing stains",
))


def _draw_fold(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = FOLD.ranges
    lo, hi = R["count"]
    folds = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        vertical = bool(rng.random() < 0.5)
        folds.append(
            {
                "vertical": vertical,
                "pos": float(rng.uniform(0.1, 0.9) * (w if vertical else h)),
                "angle": float(rng.normal(0.0, 2.0)),
                "width": uniform(rng, R["width"]),
                "depth": strength(rng, R["depth"], k),
                "highlight": uniform(rng, R["highlight"]),
            }
        )
    return {"folds": folds}


def fold_shading(p: dict[str, Any], h: int, w: int) -> np.ndarray:
    """Multiplicative shading of the fold lines (1 = unchanged)."""
    shade = np.ones((h, w), np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for f in p["folds"]:
        a = math.radians(f["angle"])
        if f["vertical"]:
            d = (xx - f["pos"]) * math.cos(a) - (yy - h / 2) * math.sin(a)
        else:
            d = (yy - f["pos"]) * math.cos(a) - (xx - w / 2) * math.sin(a)
        wd = f["width"]
        shade *= (
            1.0 - f["depth"] * np.exp(-((d / wd) ** 2)) + f["highlight"] * np.exp(-(((d - 1.5 * wd) / wd) ** 2))
        ).astype(np.float32)
    return shade


def _fold(st: Any, p: dict[str, Any]) -> None:
    st.v = st.v * fold_shading(p, st.h, st.w)[None]


FOLD = register(Effect(
    "fold", {"count": (1, 2), "width": (2.0, 30.0), "depth": (0.03, 0.3), "highlight": (0.0, 0.1)}, _draw_fold,
    hooks={"sheet": _fold}, doc="folds and creases",
))


def _draw_illumination(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = ILLUMINATION.ranges
    return {
        "gradient": strength(rng, R["gradient"], k),
        "angle": float(rng.uniform(0, 360)),
        "vignette": strength(rng, R["vignette"], k) if rng.random() < 0.5 else 0.0,
        "field": strength(rng, R["field"], k) if rng.random() < 0.6 else 0.0,
    }


def illumination(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative light field: a linear fall-off, vignetting and a low-frequency field."""
    a = math.radians(p["angle"])
    n = float(max(h, w))
    yy = (np.arange(h, dtype=np.float32) - h / 2)[:, None] / n
    xx = (np.arange(w, dtype=np.float32) - w / 2)[None, :] / n
    proj = xx * math.cos(a) + yy * math.sin(a)
    span = 0.5 * (abs(math.cos(a)) * w + abs(math.sin(a)) * h) / n
    light = 1.0 - p["gradient"] * (proj + span) / (2 * span + 1e-6)
    if p["vignette"] > 0:
        r2 = (xx * xx + yy * yy) / (0.25 * (w * w + h * h) / (n * n))
        light = light * (1.0 - p["vignette"] * r2)
    if p["field"] > 0:
        light = light * (1.0 + p["field"] * smooth_noise(rng, (h, w), max(h, w) * rng.uniform(0.2, 0.6)))
    return np.asarray(light, np.float32)


def _illumination(st: Any, p: dict[str, Any]) -> None:
    st.v = st.v * illumination(p, st.h, st.w, st.rng)[None]


ILLUMINATION = register(Effect(
    "illumination", {"gradient": (0.05, 0.3), "vignette": (0.0, 0.3), "field": (0.0, 0.12)}, _draw_illumination,
    hooks={"sheet": _illumination}, doc="uneven lighting, gradients",
))
