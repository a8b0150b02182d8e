"""Synthetic training pairs: a clean page, degraded to look like an old scan, with its exact ground truth.

Real ground truth is scarce (about 150 pages), so the model learns mostly from pairs made here. A pair is
made in three steps, all driven by ONE seeded :class:`numpy.random.Generator`:

1. a clean ink-coverage page (rendered by :mod:`ocrobin.render`, read from a folder of clean pages, or the
   ground truth of a real pair);
2. the *geometric* effects (random affine, smooth warp, scan borders that hide the page edge) applied to
   that coverage; thresholding the result gives the ground truth, so it is strictly binary and aligned
   to the pixel with everything that follows;
3. the *photometric* effects (ink, paper, stains, bleed-through, illumination, scanner) that turn the
   transformed coverage into the grey (or RGB) image; they never move a pixel.

Every effect has a probability per preset and documented parameter ranges (:data:`RANGES`, also in
``docs/degrade.md``); the values drawn for a page are returned as a JSON-ready dict.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .datasets import PairFiles, find_pairs, find_sets  # noqa: F401 - part of this API
from .exceptions import DataError, UsageError
from .imageio import IMAGE_SUFFIXES, read_gray, read_ground_truth
from .render import gaussian_blur, render_page, smooth_noise

#: Share of pages with black-ish ink (level in ``RANGES["tone"]["dark_ink"]``) when contrast is not low.
DARK_INK = 0.33

#: Effects in the order they are applied. The first three are geometric (they also shape the ground truth).
EFFECTS = (
    "affine",
    "warp",
    "border",
    "ink_spread",
    "fade",
    "broken",
    "ink_noise",
    "low_contrast",
    "texture",
    "color",
    "bleed",
    "inverted",
    "stains",
    "fold",
    "illumination",
    "blur",
    "noise",
    "speckle",
    "gamma",
    "jpeg",
)
#: Effects that move pixels or hide page content, and so change the ground truth.
GEOMETRIC = ("affine", "warp", "border")

#: Parameter ranges of every effect (the single source of the table in ``docs/degrade.md``).
#: Lengths in pixels unless the name says ``_frac`` (fraction of the page side); levels in [0, 1] (1 = white).
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "tone": {"paper": (0.45, 0.95), "difference": (0.25, 0.95), "dark_ink": (0.0, 0.15)},
    "affine": {
        "translate_frac": (-0.05, 0.05),
        "rotate_deg": (-2.0, 2.0),
        "scale": (-0.1, 0.1),
        "aniso": (-0.1, 0.1),
    },
    "warp": {"amplitude": (0.3, 3.0), "cell": (24.0, 160.0)},
    "border": {"width_frac": (0.005, 0.08), "level": (0.0, 0.3), "rough_frac": (0.0, 0.01)},
    "ink_spread": {"sigma": (0.3, 1.2), "gain": (1.0, 1.6)},
    "fade": {"floor": (0.25, 0.9), "scale": (16.0, 256.0)},
    "broken": {"fraction": (0.02, 0.3), "grain": (1.0, 4.0), "residual": (0.1, 0.5)},
    "ink_noise": {"amplitude": (0.05, 0.3), "scale": (2.0, 24.0)},
    "low_contrast": {"difference": (0.1, 0.2)},
    "texture": {
        "grain": (0.005, 0.035),
        "grain_scale": (1.0, 3.0),
        "stretch": (1.0, 2.5),
        "mottle": (0.0, 0.035),
        "mottle_scale": (16.0, 128.0),
    },
    "color": {"saturation": (0.2, 1.0)},
    "bleed": {"strength": (0.05, 0.6), "sigma": (0.5, 4.0), "shift_frac": (-0.1, 0.1)},
    "inverted": {"size_frac": (0.15, 0.6), "dark": (0.05, 0.35), "light": (0.55, 0.95)},
    "stains": {"count": (1, 6), "radius_frac": (0.03, 0.35), "darkness": (0.05, 0.3), "rim": (0.0, 1.0)},
    "fold": {"count": (1, 2), "width": (2.0, 30.0), "depth": (0.03, 0.3), "highlight": (0.0, 0.1)},
    "illumination": {"gradient": (0.05, 0.3), "vignette": (0.0, 0.3), "field": (0.0, 0.12)},
    "blur": {"sigma": (0.3, 1.8)},
    "noise": {"sigma": (0.005, 0.04)},
    "speckle": {"density": (2e-5, 5e-4), "radius": (0.4, 1.2), "dark_fraction": (0.5, 1.0)},
    "gamma": {"gamma": (0.6, 1.6)},
    "jpeg": {"quality": (15, 85)},
}

# Paper and ink colour shifts for RGB output, added to the grey level after removing their mean, so that
# the mean of R, G and B (ocrobin's grey) keeps the drawn tone.
_PAPER_SHIFTS = {
    "white": (0.0, 0.0, 0.0),
    "cream": (0.04, 0.01, -0.10),
    "beige": (0.06, 0.0, -0.14),
    "yellow": (0.04, 0.02, -0.16),
    "grey-green": (-0.02, 0.02, -0.03),
    "grey-blue": (-0.04, 0.0, 0.06),
    "rose": (0.06, -0.03, -0.04),
}
_INK_SHIFTS = {
    "black": (0.0, 0.0, 0.0),
    "brown": (0.16, 0.06, -0.04),
    "sepia": (0.22, 0.12, 0.02),
    "blue": (-0.04, 0.02, 0.22),
    "blue-black": (0.0, 0.03, 0.1),
    "red": (0.3, -0.02, -0.02),
}
_STAIN_TINT = np.array([0.75, 0.9, 1.1], np.float32)  # stains absorb more blue: brownish


@dataclass(frozen=True)
class Preset:
    """How often each effect occurs and how strong it tends to be.

    Attributes:
        probs: probability per effect (absent = never).
        skew: exponent on the strength draws: >1 favours the weak end of each range, <1 the strong end.
        plain: paper exactly white and ink exactly black (no tone drawn).
    """

    probs: dict[str, float]
    skew: float = 1.0
    plain: bool = False
    doc: str = ""


PRESETS: dict[str, Preset] = {
    "none": Preset(
        {"affine": 1.0, "warp": 0.7},
        plain=True,
        doc="geometry only; grey = 255 − coverage: thresholding it gives the ground truth exactly",
    ),
    "original": Preset(
        {"affine": 1.0, "ink_noise": 1.0, "texture": 1.0, "blur": 1.0},
        doc="only what the original ocrobin did: affine, multiscale paper and ink noise, blur",
    ),
    "mild": Preset(
        {
            "affine": 0.8,
            "warp": 0.3,
            "border": 0.05,
            "ink_spread": 0.4,
            "fade": 0.3,
            "broken": 0.1,
            "ink_noise": 0.5,
            "low_contrast": 0.05,
            "texture": 0.7,
            "color": 1.0,
            "bleed": 0.2,
            "inverted": 0.03,
            "stains": 0.15,
            "fold": 0.05,
            "illumination": 0.4,
            "blur": 0.6,
            "noise": 0.5,
            "speckle": 0.2,
            "gamma": 0.3,
            "jpeg": 0.2,
        },
        skew=2.0,
        doc="fewer and weaker effects",
    ),
    "default": Preset(
        {
            "affine": 1.0,
            "warp": 0.5,
            "border": 0.15,
            "ink_spread": 0.5,
            "fade": 0.5,
            "broken": 0.25,
            "ink_noise": 0.7,
            "low_contrast": 0.12,
            "texture": 0.9,
            "color": 1.0,
            "bleed": 0.45,
            "inverted": 0.08,
            "stains": 0.35,
            "fold": 0.15,
            "illumination": 0.6,
            "blur": 0.8,
            "noise": 0.7,
            "speckle": 0.35,
            "gamma": 0.5,
            "jpeg": 0.35,
        },
        doc="the mix used for training",
    ),
    "heavy": Preset(
        {
            "affine": 1.0,
            "warp": 0.7,
            "border": 0.3,
            "ink_spread": 0.6,
            "fade": 0.7,
            "broken": 0.4,
            "ink_noise": 0.9,
            "low_contrast": 0.25,
            "texture": 1.0,
            "color": 1.0,
            "bleed": 0.7,
            "inverted": 0.15,
            "stains": 0.6,
            "fold": 0.3,
            "illumination": 0.8,
            "blur": 0.9,
            "noise": 0.9,
            "speckle": 0.5,
            "gamma": 0.6,
            "jpeg": 0.5,
        },
        skew=0.6,
        doc="more and stronger effects",
    ),
}


def _r(rng: np.random.Generator, rng_range: tuple[float, float], skew: float = 1.0) -> float:
    """A strength drawn from a range: ``skew`` > 1 favours the low end."""
    lo, hi = rng_range
    return float(lo + (hi - lo) * rng.random() ** skew)


def _u(rng: np.random.Generator, rng_range: tuple[float, float]) -> float:
    return float(rng.uniform(*rng_range))


def _round(obj: Any) -> Any:
    """Round floats for the JSON record (4 significant decimals is plenty to reproduce a look)."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v) for v in obj]
    if isinstance(obj, np.generic):
        return _round(obj.item())
    return obj


# --- parameter drawing --------------------------------------------------------------------------------------


def _draw_effect(name: str, rng: np.random.Generator, h: int, w: int, k: float, rgb: bool) -> dict[str, Any]:
    R = RANGES[name]
    side = min(h, w)
    if name == "affine":
        return {
            "tx": _u(rng, R["translate_frac"]),
            "ty": _u(rng, R["translate_frac"]),
            "rotate": _u(rng, R["rotate_deg"]),
            "scale": _u(rng, R["scale"]),
            "aniso": _u(rng, R["aniso"]),
        }
    if name == "warp":
        return {"amplitude": _r(rng, R["amplitude"], k), "cell": _u(rng, R["cell"])}
    if name == "border":
        sides = [s for s in ("top", "bottom", "left", "right") if rng.random() < 0.4]
        if not sides:
            sides = [("top", "bottom", "left", "right")[int(rng.integers(4))]]
        return {
            "sides": {s: _r(rng, R["width_frac"], k) for s in sides},
            "level": _u(rng, R["level"]),
            "rough": _u(rng, R["rough_frac"]),
        }
    if name == "ink_spread":
        return {"sigma": _r(rng, R["sigma"], k), "gain": _r(rng, R["gain"], k)}
    if name == "fade":
        lo, hi = R["floor"]
        return {"floor": hi - (hi - lo) * rng.random() ** k, "scale": _u(rng, R["scale"])}
    if name == "broken":
        return {
            "fraction": _r(rng, R["fraction"], k),
            "grain": _u(rng, R["grain"]),
            "residual": _u(rng, R["residual"]),
        }
    if name == "ink_noise":
        return {"amplitude": _r(rng, R["amplitude"], k), "scale": _u(rng, R["scale"])}
    if name == "low_contrast":
        lo, hi = R["difference"]
        return {"difference": hi - (hi - lo) * rng.random() ** k}
    if name == "texture":
        return {
            "grain": _r(rng, R["grain"], k),
            "grain_scale": _u(rng, R["grain_scale"]),
            "stretch": _u(rng, R["stretch"]),
            "vertical": bool(rng.random() < 0.5),
            "mottle": _r(rng, R["mottle"], k),
            "mottle_scale": _u(rng, R["mottle_scale"]),
        }
    if name == "color":
        papers, inks = list(_PAPER_SHIFTS), list(_INK_SHIFTS)
        return {
            "paper": papers[int(rng.integers(len(papers)))],
            "ink": inks[int(rng.integers(len(inks)))],
            "saturation": _u(rng, R["saturation"]),
        }
    if name == "bleed":
        return {
            "strength": _r(rng, R["strength"], k),
            "sigma": _u(rng, R["sigma"]),
            "flip": "horizontal" if rng.random() < 0.8 else "vertical",
            "dx": _u(rng, R["shift_frac"]),
            "dy": _u(rng, R["shift_frac"]),
        }
    if name == "inverted":
        boxes = []
        for _ in range(1 if rng.random() < 0.8 else 2):
            bh = int(h * _u(rng, R["size_frac"]))
            bw = int(w * _u(rng, R["size_frac"]))
            y0, x0 = int(rng.integers(0, max(1, h - bh))), int(rng.integers(0, max(1, w - bw)))
            boxes.append([y0, x0, max(1, bh), max(1, bw)])
        return {
            "boxes": boxes,
            "dark": _u(rng, R["dark"]),
            "light": _u(rng, R["light"]),
            "soft": float(rng.uniform(0.0, 3.0)),
        }
    if name == "stains":
        lo, hi = R["count"]
        n = int(rng.integers(lo, hi + 1))
        blobs = []
        for _ in range(n):
            blobs.append(
                {
                    "y": float(rng.uniform(-0.1, 1.1) * h),
                    "x": float(rng.uniform(-0.1, 1.1) * w),
                    "radius": _u(rng, R["radius_frac"]) * side,
                    "darkness": _r(rng, R["darkness"], k),
                    "rim": _u(rng, R["rim"]) if rng.random() < 0.5 else 0.0,
                    "irregular": float(rng.uniform(0.05, 0.4)),
                    "aspect": float(rng.uniform(0.6, 1.6)),
                }
            )
        return {"blobs": blobs}
    if name == "fold":
        lo, hi = R["count"]
        folds = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            vertical = bool(rng.random() < 0.5)
            folds.append(
                {
                    "vertical": vertical,
                    "pos": float(rng.uniform(0.1, 0.9) * (w if vertical else h)),
                    "angle": float(rng.normal(0.0, 2.0)),
                    "width": _u(rng, R["width"]),
                    "depth": _r(rng, R["depth"], k),
                    "highlight": _u(rng, R["highlight"]),
                }
            )
        return {"folds": folds}
    if name == "illumination":
        return {
            "gradient": _r(rng, R["gradient"], k),
            "angle": float(rng.uniform(0, 360)),
            "vignette": _r(rng, R["vignette"], k) if rng.random() < 0.5 else 0.0,
            "field": _r(rng, R["field"], k) if rng.random() < 0.6 else 0.0,
        }
    if name == "blur":
        return {"sigma": _r(rng, R["sigma"], k)}
    if name == "noise":
        return {"sigma": _r(rng, R["sigma"], k)}
    if name == "speckle":
        return {
            "density": _r(rng, R["density"], k),
            "radius": _u(rng, R["radius"]),
            "dark_fraction": _u(rng, R["dark_fraction"]),
        }
    if name == "gamma":
        lo, hi = R["gamma"]
        return {"gamma": float(math.exp(rng.uniform(math.log(lo), math.log(hi))))}
    if name == "jpeg":
        lo, hi = R["quality"]
        return {"quality": int(round(hi - (hi - lo) * rng.random() ** k))}
    raise AssertionError(name)


def check_effects(names: Iterable[str]) -> list[str]:
    """Validate effect names.

    Raises:
        UsageError: an unknown name (the message lists the known ones).
    """
    out = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n not in EFFECTS:
            raise UsageError(f"unknown effect {n!r} (known: {', '.join(EFFECTS)})")
        out.append(n)
    return out


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        UsageError: unknown preset (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def draw_params(
    rng: np.random.Generator,
    shape: tuple[int, int],
    preset: str = "default",
    rgb: bool = False,
    only: Iterable[str] | None = None,
    disable: Iterable[str] = (),
) -> dict[str, Any]:
    """Draw the parameters of one degradation.

    Args:
        rng: the page's random generator.
        shape: (height, width) of the page.
        preset: a name from :data:`PRESETS`; sets probabilities, strength skew and tone.
        rgb: colour output (the ``color`` effect is drawn only then).
        only: if given, exactly these effects are on (probability 1), whatever the preset says.
        disable: effects that are never on.

    Returns:
        ``{"preset", "tone": {"paper", "ink"}, "effects": {name: {...}}}``, JSON-ready.

    Raises:
        UsageError: unknown preset or effect name.
    """
    pre = get_preset(preset)
    h, w = int(shape[0]), int(shape[1])
    off = set(check_effects(disable))
    chosen = set(check_effects(only)) if only is not None else None
    effects: dict[str, Any] = {}
    for name in EFFECTS:
        p = (1.0 if name in chosen else 0.0) if chosen is not None else pre.probs.get(name, 0.0)
        hit = rng.random() < p
        if not hit or name in off or (name == "color" and not rgb):
            continue
        effects[name] = _draw_effect(name, rng, h, w, pre.skew, rgb)
    if pre.plain and chosen is None:
        tone = {"paper": 1.0, "ink": 0.0}
    else:
        # Paper mostly 0.65-0.9; ink black-ish on a third of the pages, otherwise an ink-paper difference
        # drawn log-uniform: after the effects this matches the DIBCO pages, where ink is often grey.
        lo, hi = RANGES["tone"]["paper"]
        paper = hi - (hi - lo) * rng.random() ** 1.7
        dlo, dhi = RANGES["tone"]["difference"]
        if "low_contrast" in effects:
            diff = effects["low_contrast"]["difference"]
        elif rng.random() < DARK_INK:
            diff = paper - _u(rng, RANGES["tone"]["dark_ink"])
        else:
            diff = float(math.exp(rng.uniform(math.log(dlo), math.log(max(dlo, min(dhi, paper))))))
        tone = {"paper": paper, "ink": max(0.0, paper - max(diff, RANGES["low_contrast"]["difference"][0]))}
    return {"preset": preset, "tone": tone, "effects": effects}


# --- geometry -----------------------------------------------------------------------------------------------


def _affine_inverse(p: dict[str, Any], h: int, w: int) -> np.ndarray:
    """2×3 matrix mapping output pixel coordinates to source coordinates (about the page centre)."""
    th = math.radians(p["rotate"])
    s = 1.0 + p["scale"]
    a = 1.0 + p["aniso"]
    fwd = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) @ np.diag([s * a, s / a])
    inv = np.linalg.inv(fwd)
    c = np.array([w / 2.0, h / 2.0])
    t = np.array([p["tx"] * w, p["ty"] * h])
    # out = fwd (src - c) + c + t  =>  src = inv (out - c - t) + c
    off = c - inv @ (c + t)
    return np.hstack([inv, off[:, None]])


def _geometry(cov: np.ndarray, eff: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Apply affine and warp as one mesh transform (one resampling, so edges stay sharp)."""
    h, w = cov.shape
    if "affine" not in eff and "warp" not in eff:
        return cov
    m = _affine_inverse(eff["affine"], h, w) if "affine" in eff else np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if "warp" in eff:
        cell = max(8, int(eff["warp"]["cell"]))
        amp = eff["warp"]["amplitude"]
    else:
        cell, amp = max(h, w), 0.0
    xs = np.unique(np.append(np.arange(0, w, cell), w))
    ys = np.unique(np.append(np.arange(0, h, cell), h))
    gx, gy = np.meshgrid(xs.astype(np.float64), ys.astype(np.float64))
    sx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    sy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    if amp > 0:
        sx = sx + amp * rng.standard_normal(sx.shape)
        sy = sy + amp * rng.standard_normal(sy.shape)
    mesh = []
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            box = (int(xs[j]), int(ys[i]), int(xs[j + 1]), int(ys[i + 1]))
            quad = (
                sx[i, j],
                sy[i, j],
                sx[i + 1, j],
                sy[i + 1, j],
                sx[i + 1, j + 1],
                sy[i + 1, j + 1],
                sx[i, j + 1],
                sy[i, j + 1],
            )
            mesh.append((box, tuple(float(v) for v in quad)))
    out = Image.fromarray(cov.astype(np.float32)).transform(
        (w, h), Image.Transform.MESH, mesh, Image.Resampling.BILINEAR
    )
    return np.asarray(out, dtype=np.float32)


def _border_mask(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Soft mask (1 = scanner background) of dark bands along some page edges, with ragged inner edges."""
    mask = np.zeros((h, w), np.float32)
    rough = p["rough"] * min(h, w)
    for side, frac in p["sides"].items():
        horizontal = side in ("top", "bottom")
        n = w if horizontal else h
        depth = frac * (h if horizontal else w)
        edge = depth + rough * smooth_noise(rng, (1, n), max(4.0, n / 12.0))[0]
        edge += np.linspace(0, 1, n) * rng.normal(0, depth * 0.3)  # the page was not scanned square
        across = np.arange(h if horizontal else w, dtype=np.float32)
        if side in ("bottom", "right"):
            across = across[::-1]
        band = np.clip(edge[None, :] - across[:, None] + 0.5, 0.0, 1.0)  # (across, along)
        band = band if horizontal else band.T
        mask = np.maximum(mask, band.astype(np.float32))
    return mask


# --- photometric effects ------------------------------------------------------------------------------------


def _paper_and_ink(params: dict[str, Any], channels: int) -> tuple[np.ndarray, np.ndarray]:
    tone = params["tone"]
    paper = np.full(channels, tone["paper"], np.float32)
    ink = np.full(channels, tone["ink"], np.float32)
    col = params["effects"].get("color")
    if col is not None and channels == 3:
        s = col["saturation"]
        ps = np.array(_PAPER_SHIFTS[col["paper"]], np.float32)
        ks = np.array(_INK_SHIFTS[col["ink"]], np.float32)
        paper = paper + s * (ps - ps.mean())
        ink = ink + s * (ks - ks.mean())
    return np.clip(paper, 0.0, 1.0), np.clip(ink, 0.0, 1.0)


def _bleed_layer(verso: np.ndarray, p: dict[str, Any], h: int, w: int) -> np.ndarray:
    img = Image.fromarray(np.clip(verso, 0, 1).astype(np.float32))
    img = img.transpose(
        Image.Transpose.FLIP_LEFT_RIGHT if p["flip"] == "horizontal" else Image.Transpose.FLIP_TOP_BOTTOM
    )
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    dx, dy = p["dx"] * w, p["dy"] * h
    img = img.transform((w, h), Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), Image.Resampling.BILINEAR)
    return gaussian_blur(np.asarray(img, dtype=np.float32), p["sigma"])


def _stain_field(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
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
        d = d * (
            1.0 + b["irregular"] * smooth_noise(rng, (y1 - y0, x1 - x0), max(3.0, r / 3), octaves=3) * 0.5
        )
        body = np.clip((1.0 - d) / 0.25, 0.0, 1.0)
        body = body * (0.75 + 0.25 * np.clip(1.0 - d, 0.0, 1.0))
        s = b["darkness"] * (body * (1.0 - 0.5 * b["rim"]) + b["rim"] * np.exp(-(((d - 1.0) / 0.05) ** 2)))
        keep[y0:y1, x0:x1] *= 1.0 - np.clip(s, 0.0, 0.95)
    return 1.0 - keep


def _fold_shading(p: dict[str, Any], h: int, w: int) -> np.ndarray:
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
            1.0
            - f["depth"] * np.exp(-((d / wd) ** 2))
            + f["highlight"] * np.exp(-(((d - 1.5 * wd) / wd) ** 2))
        ).astype(np.float32)
    return shade


def _illumination(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
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


def _speckle(v: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    _, h, w = v.shape
    n = int(rng.poisson(p["density"] * h * w))
    ss = 2
    dark = Image.new("L", (w * ss, h * ss), 0)
    light = Image.new("L", (w * ss, h * ss), 0)
    dd, ld = ImageDraw.Draw(dark), ImageDraw.Draw(light)
    ys = rng.uniform(0, h, n) * ss
    xs = rng.uniform(0, w, n) * ss
    rs = np.clip(rng.exponential(p["radius"], n), 0.4, 3.0 * p["radius"]) * ss
    is_dark = rng.random(n) < p["dark_fraction"]
    strength = rng.uniform(0.4, 1.0, n)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    jitter = rng.uniform(0.5, 1.3, (n, 6))
    for i in range(n):  # small irregular hexagons: dust and paper defects, not perfect dots
        r = rs[i] * jitter[i]
        poly = np.stack([xs[i] + r * np.cos(angles), ys[i] + r * np.sin(angles)], axis=1)
        (dd if is_dark[i] else ld).polygon(poly.ravel().tolist(), fill=int(255 * strength[i]))
    md = np.asarray(dark.reduce(ss), np.float32) / 255.0
    ml = np.asarray(light.reduce(ss), np.float32) / 255.0
    level_d = float(rng.uniform(0.05, 0.35))
    level_l = float(rng.uniform(0.85, 1.0))
    v = v * (1.0 - md) + level_d * md
    return v * (1.0 - ml) + level_l * ml


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert(Image.fromarray(img).mode))


#: Ink-paper difference that fading may not go below (a page's own contrast may be as low as 0.1).
MIN_CONTRAST = 0.07


def stroke_width(ink: np.ndarray) -> float:
    """Typical stroke width in pixels: twice the ink area over its boundary length (inf without ink)."""
    n = int(ink.sum())
    if n == 0:
        return float("inf")
    inner = ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    edge = n - int(inner.sum())
    return 2.0 * n / max(1, edge)


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """Square dilation by ``r`` pixels (separable, no wrap-around)."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        n = src.shape[axis]
        for s in range(1, r + 1):
            a, b = [slice(None)] * 2, [slice(None)] * 2
            a[axis], b[axis] = slice(s, n), slice(0, n - s)
            out[tuple(a)] |= src[tuple(b)]
            out[tuple(b)] |= src[tuple(a)]
    return out


def _contrast_stretch(
    v: np.ndarray, ink: np.ndarray, eff: dict[str, Any], border: np.ndarray | None
) -> float:
    """Factor (≥ 1, at most 2.5) that brings the mean ink-paper difference up to :data:`MIN_CONTRAST`."""
    valid = np.ones(ink.shape, bool)
    for y0, x0, bh, bw in eff.get("inverted", {}).get("boxes", []):
        valid[max(0, y0 - 4) : y0 + bh + 4, max(0, x0 - 4) : x0 + bw + 4] = False
    if border is not None:
        valid &= border < 0.01
    core = ink & ~_grow(~ink, 1) & valid
    paper = ~_grow(ink, 3) & valid
    if core.sum() < 20 or paper.sum() < 20:
        return 1.0
    lum = v.mean(axis=0)
    diff = float(lum[paper].mean() - lum[core].mean())
    if diff >= MIN_CONTRAST or diff <= 0.0:
        return 1.0
    return float(min(2.5, MIN_CONTRAST / diff))


def degrade(
    clean: np.ndarray,
    rng: np.random.Generator,
    params: str | dict[str, Any] = "default",
    rgb: bool = False,
    verso: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Degrade a clean page into a realistic scan and its exactly aligned ground truth.

    Args:
        clean: H×W ink coverage, float in [0, 1] (1 = ink) or bool (True = ink).
        rng: the page's random generator (effect parameters, when drawn here, and all noise fields).
        params: a preset name, or parameters from :func:`draw_params`.
        rgb: return an H×W×3 colour image instead of H×W grey.
        verso: coverage of the other side of the sheet for bleed-through (default: this page, shifted).

    Returns:
        (image uint8 H×W or H×W×3, ink bool H×W (True = text), the parameters used, JSON-ready).
    """
    cov0 = np.asarray(clean)
    cov0 = cov0.astype(np.float32) if cov0.dtype == np.bool_ else np.clip(cov0.astype(np.float32), 0.0, 1.0)
    h, w = cov0.shape
    if isinstance(params, str):
        params = draw_params(rng, (h, w), params, rgb=rgb)
    eff = params["effects"]

    # 1. geometry: the ground truth is the thresholded transformed page.
    cov = _geometry(cov0, eff, rng)
    border = _border_mask(eff["border"], h, w, rng) if "border" in eff else None
    if border is not None:
        cov = cov * (1.0 - border)
    q = np.round(np.clip(cov, 0.0, 1.0) * 255.0).astype(np.uint8)
    ink = q >= 128
    cov = q.astype(np.float32) * np.float32(1.0 / 255.0)

    # Keep the text legible: blur no wider than the strokes, fading and noise no deeper than the contrast.
    sw = stroke_width(ink)
    diff = max(1e-3, params["tone"]["paper"] - params["tone"]["ink"])
    for name, key, limit in (
        ("blur", "sigma", 0.2 + 0.45 * sw),
        ("ink_spread", "sigma", 0.2 + 0.4 * sw),
        ("noise", "sigma", diff / 3.0),
    ):
        if name in eff and eff[name][key] > limit:
            eff[name][key] = limit
    if "fade" in eff:
        eff["fade"]["floor"] = max(eff["fade"]["floor"], min(1.0, MIN_CONTRAST / diff))

    # 2. ink: how much of the paper each pixel's ink covers, as seen (not as labelled).
    alpha = cov
    if "ink_spread" in eff:
        p = eff["ink_spread"]
        alpha = np.maximum(alpha, np.clip(gaussian_blur(alpha, p["sigma"]) * p["gain"], 0.0, 1.0))
    if "fade" in eff:
        p = eff["fade"]
        n = smooth_noise(rng, (h, w), p["scale"], octaves=2)
        alpha = alpha * (p["floor"] + (1.0 - p["floor"]) * np.clip(0.5 + 0.35 * n, 0.0, 1.0))
    if "broken" in eff:
        p = eff["broken"]
        n = smooth_noise(rng, (h, w), p["grain"], octaves=2)
        thr = NormalDist().inv_cdf(1.0 - p["fraction"])
        hole = np.clip((n - thr) / 0.3, 0.0, 1.0)
        alpha = alpha * (1.0 - (1.0 - p["residual"]) * hole)
    if "ink_noise" in eff:
        p = eff["ink_noise"]
        n = smooth_noise(rng, (h, w), p["scale"], octaves=3)
        alpha = np.clip(alpha * (1.0 + p["amplitude"] * n), 0.0, 1.0)

    # 3. paper, bleed-through and the ink on top.
    channels = 3 if rgb else 1
    paper_c, ink_c = _paper_and_ink(params, channels)
    paper = np.broadcast_to(paper_c[:, None, None], (channels, h, w)).astype(np.float32)
    if "texture" in eff:
        p = eff["texture"]
        st = p["stretch"]
        sh = (max(1, int(h / st)), w) if p["vertical"] else (h, max(1, int(w / st)))  # fibres along y or x
        n = smooth_noise(rng, sh, p["grain_scale"], octaves=2)
        if sh != (h, w):
            n = np.asarray(Image.fromarray(n).resize((w, h), Image.Resampling.BILINEAR), np.float32)
        tex = p["grain"] * n
        if p["mottle"] > 0:
            tex += p["mottle"] * smooth_noise(rng, (h, w), p["mottle_scale"], octaves=3)
        paper = paper * (1.0 + tex)[None]
    if "bleed" in eff:
        p = eff["bleed"]
        b = _bleed_layer(cov0 if verso is None else np.asarray(verso, np.float32), p, h, w) * p["strength"]
        paper = paper + (ink_c[:, None, None] - paper) * b[None]
    v = paper + (ink_c[:, None, None] - paper) * alpha[None]

    # 4. things that happened to the sheet.
    inverted_mask: np.ndarray | None = None
    if "inverted" in eff:
        p = eff["inverted"]
        pl = float(paper_c.mean())
        inverted_mask = np.zeros((h, w), np.float32)
        for y0, x0, bh, bw in p["boxes"]:
            region = v[:, y0 : y0 + bh, x0 : x0 + bw]
            grain = paper[:, y0 : y0 + bh, x0 : x0 + bw].mean(axis=0) / max(
                pl, 1e-3
            )  # keep the paper's texture
            a = alpha[y0 : y0 + bh, x0 : x0 + bw]
            inv = (p["dark"] + (p["light"] - p["dark"]) * a) * grain
            m = np.ones((bh, bw), np.float32)
            if p["soft"] > 0.3:
                m = gaussian_blur(np.pad(m, 4), p["soft"])[4:-4, 4:-4]
            v[:, y0 : y0 + bh, x0 : x0 + bw] = region * (1.0 - m) + inv[None] * m
            inverted_mask[y0 : y0 + bh, x0 : x0 + bw] = np.maximum(
                inverted_mask[y0 : y0 + bh, x0 : x0 + bw], m
            )
    if "stains" in eff:
        s = _stain_field(eff["stains"], h, w, rng)
        tint = _STAIN_TINT if channels == 3 else np.ones(1, np.float32)
        v = v * (1.0 - s[None] * tint[:, None, None])
    if "fold" in eff:
        v = v * _fold_shading(eff["fold"], h, w)[None]
    if "illumination" in eff:
        v = v * _illumination(eff["illumination"], h, w, rng)[None]
    if border is not None:
        p = eff["border"]
        level = np.clip(p["level"] * (1.0 + 0.3 * smooth_noise(rng, (h, w), 16.0)), 0.0, 1.0)
        v = v * (1.0 - border[None]) + (level * border)[None]

    # Effects multiply: keep the average stroke at least MIN_CONTRAST darker than the paper around it.
    stretch = _contrast_stretch(v, ink, eff, border)
    if stretch > 1.0:
        level = float(paper_c.mean())
        keep = inverted_mask if inverted_mask is not None else np.float32(0.0)
        v = v + (1.0 - keep) * ((level - v) + (v - level) * np.float32(stretch))
        params["tone"]["stretch"] = stretch

    # 5. the scanner.
    if "blur" in eff:
        v = gaussian_blur(np.clip(v, 0.0, 1.0), eff["blur"]["sigma"])
    if "noise" in eff:
        v = v + eff["noise"]["sigma"] * rng.standard_normal(v.shape, dtype=np.float32)
    if "speckle" in eff:
        v = _speckle(v, eff["speckle"], rng)
    if "gamma" in eff:
        v = np.clip(v, 0.0, 1.0) ** np.float32(eff["gamma"]["gamma"])
    # With white paper, black ink and no photometric effect this is exactly 255 - q: grey < 128 iff ink.
    img = np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)
    img = np.ascontiguousarray(np.moveaxis(img, 0, -1)) if rgb else np.ascontiguousarray(img[0])
    if "jpeg" in eff:
        img = _jpeg(img, eff["jpeg"]["quality"])
    return img, ink, _round(params)


# --- page sources -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load_coverage(path: str, kind: str) -> np.ndarray:
    """uint8 ink coverage (255 = ink) of a clean page or a ground-truth file (cached: files are reused)."""
    if kind == "pairs":
        return read_ground_truth(path).astype(np.uint8) * np.uint8(255)
    return np.round((1.0 - read_gray(path)) * 255.0).astype(np.uint8)


def _crop(
    a: np.ndarray, rng: np.random.Generator, shape: tuple[int, int], scale: float
) -> tuple[np.ndarray, list[int]]:
    """A random window of ``shape`` seen at ``scale`` (source window = shape / scale, clipped to the page)."""
    H, W = a.shape
    sh = min(H, max(1, int(round(shape[0] / scale))))
    sw = min(W, max(1, int(round(shape[1] / scale))))
    y0 = int(rng.integers(0, H - sh + 1))
    x0 = int(rng.integers(0, W - sw + 1))
    win = a[y0 : y0 + sh, x0 : x0 + sw]
    oh, ow = max(1, int(round(sh * scale))), max(1, int(round(sw * scale)))
    cov = win.astype(np.float32) / 255.0
    if (oh, ow) != (sh, sw):
        cov = np.asarray(Image.fromarray(cov).resize((ow, oh), Image.Resampling.BILINEAR), np.float32)
    return cov, [y0, x0, sh, sw]


@dataclass
class PageSource:
    """Where clean pages come from: rendered, clean image files, or the ground truth of real pairs.

    Args:
        clean: clean page files (ink dark).
        pairs: ground-truth files of real pairs (text = 0).
        render_fraction: probability that a page is rendered; None = 1 without files, 0 with files.
    """

    clean: Sequence[str] = ()
    pairs: Sequence[str] = ()
    render_fraction: float | None = None

    def _files(self) -> list[tuple[str, str]]:
        return [(p, "clean") for p in self.clean] + [(p, "pairs") for p in self.pairs]

    def page(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        """One clean page of about ``shape`` (file pages may be smaller), with a description for the JSON."""
        files = self._files()
        frac = self.render_fraction if self.render_fraction is not None else (0.0 if files else 1.0)
        if not files or rng.random() < frac:
            info: dict[str, Any] = {"kind": "render"}
            return render_page(rng, shape, info=info), info
        path, kind = files[int(rng.integers(len(files)))]
        scale = float(math.exp(rng.uniform(math.log(0.7), math.log(1.4)))) if rng.random() < 0.5 else 1.0
        cov, crop = _crop(_load_coverage(path, kind), rng, shape, scale)
        return cov, {"kind": kind, "file": path, "crop": crop, "scale": round(scale, 4)}

    def verso(self, rng: np.random.Generator, shape: tuple[int, int], info: dict[str, Any]) -> np.ndarray:
        """The back of the sheet, for bleed-through: a page of the same kind."""
        files = self._files()
        if info.get("kind") == "render" or not files:
            h, w = shape
            half = render_page(
                rng,
                (max(1, h // 2), max(1, w // 2)),
                kind=info.get("layout"),
                xheight=info.get("xheight", 12.0) / 2,
            )
            return half
        path, kind = files[int(rng.integers(len(files)))]
        return _crop(_load_coverage(path, kind), rng, shape, 1.0)[0]


def page_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of page ``index`` of a run: independent of the order or the worker that makes it."""
    return np.random.SeedSequence([int(seed), int(index)])


def make_pair(
    rng: np.random.Generator,
    size: tuple[int, int],
    preset: str = "default",
    rgb: bool = False,
    source: PageSource | None = None,
    disable: Iterable[str] = (),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Make one training pair from scratch.

    Args:
        rng: the page's random generator (everything about the pair follows from it).
        size: requested (height, width); pages cut from files may be smaller.
        preset: degradation preset (see :data:`PRESETS`).
        rgb: colour image instead of grey.
        source: where the clean page comes from (default: rendered).
        disable: effects to leave out.

    Returns:
        (image uint8, ink bool, parameters with a ``source`` entry).
    """
    source = source or PageSource()
    clean, info = source.page(rng, size)
    params = draw_params(rng, clean.shape, preset, rgb=rgb, disable=disable)
    verso = source.verso(rng, clean.shape, info) if "bleed" in params["effects"] else None
    img, ink, params = degrade(clean, rng, params, rgb=rgb, verso=verso)
    params["source"] = _round(info)
    return img, ink, params


# --- DIBCO-style folders ------------------------------------------------------------------------------------


def list_clean(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under ``folder`` (recursively, sorted).

    Raises:
        DataError: not a directory, or no images in it.
    """
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: no such directory")
    files = sorted(
        str(p)
        for p in d.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{d}: no images found")
    return files


def list_pair_truths(folder: str | os.PathLike[str]) -> list[str]:
    """Ground-truth files of the DIBCO-style sets under ``folder``.

    Raises:
        DataError: not a directory, or no ground truth found.
    """
    files = [str(p.gt) for p in find_pairs(folder) if p.gt is not None]
    if not files:
        raise DataError(f"{folder}: no DIBCO-style sets (SET/img + SET/gt) found")
    return files


# --- preview ------------------------------------------------------------------------------------------------


def contact_sheet(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], columns: int = 4, tile: int = 256
) -> Image.Image:
    """A grid of samples, each a ``tile``-pixel crop of the image above the same crop of its ground truth.

    Crops are taken at full resolution (from the page centre) so that a person judges the pixels the
    model will see, not a reduced page.
    """
    n = len(pairs)
    rows = max(1, math.ceil(n / columns))
    gap = 6
    cw, ch = tile + gap, 2 * tile + gap + 2
    sheet = Image.new("RGB", (columns * cw + gap, rows * ch + gap), (90, 90, 90))
    for i, (img, ink) in enumerate(pairs):
        h, w = ink.shape
        th, tw = min(tile, h), min(tile, w)
        y0, x0 = (h - th) // 2, (w - tw) // 2
        im = Image.fromarray(np.ascontiguousarray(img[y0 : y0 + th, x0 : x0 + tw])).convert("RGB")
        gt = Image.fromarray(np.where(ink[y0 : y0 + th, x0 : x0 + tw], 0, 255).astype(np.uint8)).convert(
            "RGB"
        )
        r, c = divmod(i, columns)
        x, y = gap + c * cw, gap + r * ch
        sheet.paste(im, (x, y))
        sheet.paste(gt, (x, y + tile + 2))
    return sheet


# --- many pages, in parallel, reproducibly ------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the pages of a run (with the page index).

    Attributes:
        seed: run seed; page ``i`` uses :func:`page_seed` (seed, i).
        size: (min, max) page side in pixels; height and width are drawn separately.
        preset: degradation preset.
        rgb: colour images.
        clean: clean page files; pairs: ground-truth files of real pairs.
        render_fraction: share of rendered pages when files are given (None: 1 without files, 0 with).
        disable: effects left out.
    """

    seed: int = 0
    size: tuple[int, int] = (512, 1536)
    preset: str = "default"
    rgb: bool = False
    clean: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    render_fraction: float | None = None
    disable: tuple[str, ...] = ()


@dataclass
class Sample:
    """One generated pair, encoded for a shard (``record``) and optionally as arrays (for previews)."""

    index: int
    record: dict[str, Any]
    pixels: int
    arrays: tuple[np.ndarray, np.ndarray] | None = None


def sample_key(seed: int, index: int) -> str:
    """Shard key of page ``index`` of run ``seed`` (no dots: webdataset splits keys at the first dot)."""
    return f"synth-s{seed}-{index:08d}"


def make_sample(
    cfg: SynthConfig, index: int, keep_arrays: bool = False, source: PageSource | None = None
) -> Sample:
    """Make page ``index`` of the run described by ``cfg``: the same bytes whichever process makes it."""
    from .imageio import encode_png

    rng = np.random.default_rng(page_seed(cfg.seed, index))
    lo, hi = cfg.size
    size = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    if source is None:
        source = PageSource(cfg.clean, cfg.pairs, cfg.render_fraction)
    img, ink, params = make_pair(rng, size, cfg.preset, cfg.rgb, source, cfg.disable)
    meta = {"seed": cfg.seed, "index": index, "size": list(ink.shape), **params}
    record = {
        "__key__": sample_key(cfg.seed, index),
        "gray.png": encode_png(img),
        "bin.png": encode_png(np.where(ink, 0, 255).astype(np.uint8)),
        "json": json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(),
    }
    return Sample(index, record, int(ink.size), (img, ink) if keep_arrays else None)


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: SynthConfig, keep: int) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["keep"] = keep
    _WORKER["source"] = PageSource(cfg.clean, cfg.pairs, cfg.render_fraction)


def _worker_run(index: int) -> Sample:
    return make_sample(_WORKER["cfg"], index, index < _WORKER["keep"], _WORKER["source"])


def generate(cfg: SynthConfig, count: int, workers: int = 1, keep_arrays: int = 0) -> Iterator[Sample]:
    """Yield pages 0 .. count-1 of a run, in order, made by ``workers`` processes.

    Args:
        cfg: the run.
        count: number of pages.
        workers: processes (1 = in this process).
        keep_arrays: also return the arrays of the first this many pages (for a preview).
    """
    from .render import font_paths

    font_paths()  # scan fonts once, before forking, so that workers inherit the list
    if workers <= 1:
        _worker_init(cfg, keep_arrays)
        for i in range(count):
            yield _worker_run(i)
        return
    import multiprocessing

    with multiprocessing.Pool(workers, initializer=_worker_init, initargs=(cfg, keep_arrays)) as pool:
        yield from pool.imap(_worker_run, range(count), chunksize=1)
