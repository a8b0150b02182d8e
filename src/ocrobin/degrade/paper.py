"""Paper effects: the paper layer under the ink (grain and fibres, colour, bleed-through)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..render import gaussian_blur, smooth_noise
from .registry import Effect, register, strength, uniform


def _draw_texture(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = TEXTURE.ranges
    return {
        "grain": strength(rng, R["grain"], k),
        "grain_scale": uniform(rng, R["grain_scale"]),
        "stretch": uniform(rng, R["stretch"]),
        "vertical": bool(rng.random() < 0.5),
        "mottle": strength(rng, R["mottle"], k),
        "mottle_scale": uniform(rng, R["mottle_scale"]),
    }


def _texture(st: Any, p: dict[str, Any]) -> None:
    h, w = st.h, st.w
    s = p["stretch"]
    sh = (max(1, int(h / s)), w) if p["vertical"] else (h, max(1, int(w / s)))  # fibres along y or x
    n = smooth_noise(st.rng, sh, p["grain_scale"], octaves=2)
    if sh != (h, w):
        n = np.asarray(Image.fromarray(n).resize((w, h), Image.Resampling.BILINEAR), np.float32)
    tex = p["grain"] * n
    if p["mottle"] > 0:
        tex += p["mottle"] * smooth_noise(st.rng, (h, w), p["mottle_scale"], octaves=3)
    st.paper = st.paper * (1.0 + tex)[None]


TEXTURE = register(Effect(
    "texture",
    {"grain": (0.005, 0.035), "grain_scale": (1.0, 3.0), "stretch": (1.0, 2.5), "mottle": (0.0, 0.035),
     "mottle_scale": (16.0, 128.0)},
    _draw_texture, hooks={"paper": _texture}, doc="paper grain, fibres and mottling (the original's)",
))

# Paper and ink colour shifts for RGB output, added to the grey level after removing their mean, so that
# the mean of R, G and B (ocrobin's grey) keeps the drawn tone.
PAPER_SHIFTS = {
    "white": (0.0, 0.0, 0.0),
    "cream": (0.04, 0.01, -0.10),
    "beige": (0.06, 0.0, -0.14),
    "yellow": (0.04, 0.02, -0.16),
    "grey-green": (-0.02, 0.02, -0.03),
    "grey-blue": (-0.04, 0.0, 0.06),
    "rose": (0.06, -0.03, -0.04),
}
INK_SHIFTS = {
    "black": (0.0, 0.0, 0.0),
    "brown": (0.16, 0.06, -0.04),
    "sepia": (0.22, 0.12, 0.02),
    "blue": (-0.04, 0.02, 0.22),
    "blue-black": (0.0, 0.03, 0.1),
    "red": (0.3, -0.02, -0.02),
}


def _draw_color(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    papers, inks = list(PAPER_SHIFTS), list(INK_SHIFTS)
    return {
        "paper": papers[int(rng.integers(len(papers)))],
        "ink": inks[int(rng.integers(len(inks)))],
        "saturation": uniform(rng, COLOR.ranges["saturation"]),
    }


#: read when paper and ink colours are set (RGB pages only)
COLOR = register(Effect("color", {"saturation": (0.2, 1.0)}, _draw_color, doc="coloured paper and ink"))


def _draw_bleed(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = BLEED.ranges
    return {
        "strength": strength(rng, R["strength"], k),
        "sigma": uniform(rng, R["sigma"]),
        "flip": "horizontal" if rng.random() < 0.8 else "vertical",
        "dx": uniform(rng, R["shift_frac"]),
        "dy": uniform(rng, R["shift_frac"]),
    }


def bleed_layer(verso: np.ndarray, p: dict[str, Any], h: int, w: int) -> np.ndarray:
    """The other side's ink as seen through the sheet: mirrored, resized, shifted and blurred."""
    img = Image.fromarray(np.clip(verso, 0, 1).astype(np.float32))
    img = img.transpose(
        Image.Transpose.FLIP_LEFT_RIGHT if p["flip"] == "horizontal" else Image.Transpose.FLIP_TOP_BOTTOM
    )
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    dx, dy = p["dx"] * w, p["dy"] * h
    img = img.transform((w, h), Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), Image.Resampling.BILINEAR)
    return gaussian_blur(np.asarray(img, dtype=np.float32), p["sigma"])


def _bleed(st: Any, p: dict[str, Any]) -> None:
    b = bleed_layer(st.verso_or_self(), p, st.h, st.w) * p["strength"]
    st.paper = st.paper + (st.ink_c[:, None, None] - st.paper) * b[None]


BLEED = register(Effect(
    "bleed", {"strength": (0.05, 0.6), "sigma": (0.5, 4.0), "shift_frac": (-0.1, 0.1)}, _draw_bleed,
    hooks={"paper": _bleed}, doc="bleed-through / show-through of the other side",
))
