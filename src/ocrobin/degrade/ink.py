"""Ink effects: how much of the paper each pixel's ink covers, as seen (the ground truth is not touched)."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from ..render import gaussian_blur, smooth_noise
from .registry import Effect, register, strength, uniform


def _draw_spread(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = INK_SPREAD.ranges
    return {"sigma": strength(rng, R["sigma"], k), "gain": strength(rng, R["gain"], k)}


def _spread(st: Any, p: dict[str, Any]) -> None:
    st.alpha = np.maximum(st.alpha, np.clip(gaussian_blur(st.alpha, p["sigma"]) * p["gain"], 0.0, 1.0))


INK_SPREAD = register(Effect(
    "ink_spread", {"sigma": (0.3, 1.2), "gain": (1.0, 1.6)}, _draw_spread, hooks={"ink": _spread},
    doc="ink soaked into the paper, bolder strokes (appearance only)",
))


def _draw_fade(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = FADE.ranges
    lo, hi = R["floor"]
    return {"floor": hi - (hi - lo) * rng.random() ** k, "scale": uniform(rng, R["scale"])}


def _fade(st: Any, p: dict[str, Any]) -> None:
    n = smooth_noise(st.rng, (st.h, st.w), p["scale"], octaves=2)
    st.alpha = st.alpha * (p["floor"] + (1.0 - p["floor"]) * np.clip(0.5 + 0.35 * n, 0.0, 1.0))


FADE = register(Effect(
    "fade", {"floor": (0.25, 0.9), "scale": (16.0, 256.0)}, _draw_fade, hooks={"ink": _fade},
    doc="faded ink, uneven over the page",
))


def _draw_broken(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = BROKEN.ranges
    return {
        "fraction": strength(rng, R["fraction"], k),
        "grain": uniform(rng, R["grain"]),
        "residual": uniform(rng, R["residual"]),
    }


def _broken(st: Any, p: dict[str, Any]) -> None:
    n = smooth_noise(st.rng, (st.h, st.w), p["grain"], octaves=2)
    thr = NormalDist().inv_cdf(1.0 - p["fraction"])
    hole = np.clip((n - thr) / 0.3, 0.0, 1.0)
    st.alpha = st.alpha * (1.0 - (1.0 - p["residual"]) * hole)


BROKEN = register(Effect(
    "broken", {"fraction": (0.02, 0.3), "grain": (1.0, 4.0), "residual": (0.1, 0.5)}, _draw_broken,
    hooks={"ink": _broken}, doc="broken, abraded strokes",
))


def _draw_ink_noise(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = INK_NOISE.ranges
    return {"amplitude": strength(rng, R["amplitude"], k), "scale": uniform(rng, R["scale"])}


def _ink_noise(st: Any, p: dict[str, Any]) -> None:
    n = smooth_noise(st.rng, (st.h, st.w), p["scale"], octaves=3)
    st.alpha = np.clip(st.alpha * (1.0 + p["amplitude"] * n), 0.0, 1.0)


INK_NOISE = register(Effect(
    "ink_noise", {"amplitude": (0.05, 0.3), "scale": (2.0, 24.0)}, _draw_ink_noise, hooks={"ink": _ink_noise},
    doc="ink density varying along strokes (the original's)",
))


def _draw_low_contrast(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    lo, hi = LOW_CONTRAST.ranges["difference"]
    return {"difference": hi - (hi - lo) * rng.random() ** k}


#: read by the tone drawing: the ink-paper difference of the page
LOW_CONTRAST = register(Effect(
    "low_contrast", {"difference": (0.1, 0.2)}, _draw_low_contrast, doc="ink barely darker than the paper",
))


def _draw_clean(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = CLEAN.ranges
    return {"paper": uniform(rng, R["paper"]), "ink": uniform(rng, R["ink"]), "blur": uniform(rng, R["blur"])}


#: read by the tone drawing: a clean, high-contrast page, with only the effects in :data:`CLEAN_KEEP`
CLEAN = register(Effect(
    "clean", {"paper": (0.8, 0.98), "ink": (0.0, 0.2), "blur": (0.3, 1.0)}, _draw_clean,
    doc="a clean, high-contrast page (only geometry, light blur, noise and JPEG): stay out of the way",
))
#: Effects a ``clean`` page keeps.
CLEAN_KEEP = ("clean", "affine", "warp", "blur", "noise", "jpeg", "color")
