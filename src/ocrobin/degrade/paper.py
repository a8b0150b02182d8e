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


def _bleed_draw(name: str, horizontal: float) -> Any:
    """Parameters of a bleed-through effect: the other side mirrored (left-right with this probability)."""

    def draw(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
        from .registry import get

        R = get(name).ranges
        return {
            "strength": strength(rng, R["strength"], k),
            "sigma": uniform(rng, R["sigma"]),
            "flip": "horizontal" if rng.random() < horizontal else "vertical",
            "dx": uniform(rng, R["shift_frac"]),
            "dy": uniform(rng, R["shift_frac"]),
        }

    return draw


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
    "bleed", {"strength": (0.05, 0.6), "sigma": (0.5, 4.0), "shift_frac": (-0.1, 0.1)}, _bleed_draw("bleed", 0.8),
    hooks={"paper": _bleed}, doc="bleed-through / show-through of the other side",
))


BLEED_SHARP = register(Effect(
    "bleed_sharp", {"strength": (0.4, 0.95), "sigma": (0.0, 1.0), "shift_frac": (-0.1, 0.1)},
    _bleed_draw("bleed_sharp", 0.85),
    hooks={"paper": _bleed},
    doc="strong, sharp bleed-through: ink of the other side soaked through, nearly as dark as the front",
))

#: Colours of printed rulings: a hue shift added to the ruling's grey level, as for paper and ink.
RULING_SHIFTS = {
    "grey": (0.0, 0.0, 0.0),
    "blue": (-0.16, -0.02, 0.18),
    "red": (0.22, -0.11, -0.11),
    "green": (-0.08, 0.1, -0.02),
}
RULING_KINDS = ("lines", "grid", "ledger")


def _draw_rulings(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = RULINGS.ranges
    kind = RULING_KINDS[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    colours = list(RULING_SHIFTS)
    spacing = uniform(rng, R["grid_spacing"] if kind == "grid" else R["spacing"])
    columns = []
    if kind == "ledger":
        for _ in range(int(rng.integers(2, 7))):
            columns.append([float(rng.uniform(0.05, 0.95) * w), bool(rng.random() < 0.4)])  # x, doubled
    return {
        "kind": kind,
        "colour": colours[int(rng.choice(len(colours), p=[0.4, 0.35, 0.2, 0.05]))],
        "spacing": spacing,
        "phase": float(rng.uniform(0.0, spacing)),
        "width": uniform(rng, R["width"]),
        "darkness": strength(rng, R["darkness"], k),
        "margin": float(rng.uniform(0.05, 0.2) * w) if kind == "lines" and rng.random() < 0.4 else None,
        "columns": columns,
        "unevenness": uniform(rng, R["unevenness"]),
    }


def line_coverage(u: np.ndarray, width: float, spacing: float | None = None) -> np.ndarray:
    """Anti-aliased coverage of lines of ``width`` at u = 0 (and every ``spacing``) along coordinate ``u``."""
    dist = np.abs(u) if spacing is None else np.abs(np.mod(u + spacing / 2, spacing) - spacing / 2)
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def _rulings(st: Any, p: dict[str, Any]) -> None:
    from .geometry import affine_inverse

    h, w = st.h, st.w
    # rulings are printed on the sheet, so they are askew with the text: page coordinates of each pixel
    m = affine_inverse(st.effects["affine"], h, w) if "affine" in st.effects else np.eye(2, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    sy = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    r = line_coverage(sy - p["phase"], p["width"], p["spacing"])
    if p["kind"] == "grid":
        r = np.maximum(r, line_coverage(sx - p["phase"], p["width"], p["spacing"]))
    for x, doubled in p["columns"]:
        r = np.maximum(r, line_coverage(sx - x, p["width"] * 1.3))
        if doubled:
            r = np.maximum(r, line_coverage(sx - x - 3.0 - p["width"], p["width"]))
    if p["margin"] is not None:
        r = np.maximum(r, line_coverage(sx - p["margin"], p["width"] * 1.2))
    r = r * np.clip(1.0 + p["unevenness"] * smooth_noise(st.rng, (h, w), 12.0, octaves=2), 0.0, 1.0)
    level = st.paper_c.mean() - p["darkness"] * (st.paper_c.mean() - st.ink_c.mean())
    colour = np.clip(level + np.array(RULING_SHIFTS[p["colour"]], np.float32)[: st.channels]
                     * (st.channels == 3), 0.0, 1.0)
    st.paper = st.paper + (colour[:, None, None] - st.paper) * r[None]


RULINGS = register(Effect(
    "rulings",
    {"spacing": (14.0, 60.0), "grid_spacing": (10.0, 40.0), "width": (0.6, 3.0), "darkness": (0.15, 0.85),
     "unevenness": (0.0, 0.5)},
    _draw_rulings, hooks={"paper": _rulings},
    doc="preprinted rulings, ledger columns and squared grids under the text (background in the ground truth)",
))
