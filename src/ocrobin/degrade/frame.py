"""What lies around and beyond the page: scanner background, page edges, binding shadows, facing pages.

On real scans these dark areas are paper-less and must stay background, yet a binarizer that has never
seen them takes them for large blobs of ink. ``border``, ``page_edge`` and ``facing_page`` hide the page
under them (no ink there in the ground truth); ``binding`` only darkens the page, whose text stays text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..render import gaussian_blur, smooth_noise
from .registry import Effect, register, strength, uniform

SIDES = ("top", "bottom", "left", "right")


def beyond(side: str, h: int, w: int, edge: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) past an edge line drawn along ``side``: > 0 between the line and that side.

    Args:
        side: ``top``, ``bottom``, ``left`` or ``right``.
        edge: the line's distance from that side at each position along it (length w or h).
    """
    horizontal = side in ("top", "bottom")
    across = np.arange(h if horizontal else w, dtype=np.float32)
    if side in ("bottom", "right"):
        across = across[::-1]
    d = edge.astype(np.float32)[None, :] - across[:, None]  # (across, along)
    return np.ascontiguousarray(d if horizontal else d.T)


def edge_line(rng: np.random.Generator, n: int, depth: float, wobble: float, tilt: float) -> np.ndarray:
    """An edge ``depth`` pixels in from a side, with a smooth wobble and a tilt (the sheet was not square)."""
    edge = depth + wobble * smooth_noise(rng, (1, n), max(4.0, n / 6.0))[0]
    return edge + np.linspace(-0.5, 0.5, n) * tilt


def _along(side: str, h: int, w: int) -> int:
    return w if side in ("top", "bottom") else h


# --- border -------------------------------------------------------------------------------------------------


def _draw_border(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = BORDER.ranges
    sides = [s for s in SIDES if rng.random() < 0.4]
    if not sides:
        sides = [SIDES[int(rng.integers(4))]]
    return {
        "sides": {s: strength(rng, R["width_frac"], k) for s in sides},
        "level": uniform(rng, R["level"]),
        "rough": uniform(rng, R["rough_frac"]),
    }


def border_mask(p: dict[str, Any], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Soft mask (1 = scanner background) of dark bands along some page edges, with ragged inner edges."""
    mask = np.zeros((h, w), np.float32)
    rough = p["rough"] * min(h, w)
    for side, frac in p["sides"].items():
        n = _along(side, h, w)
        depth = frac * (w if n == h else h)
        edge = depth + rough * smooth_noise(rng, (1, n), max(4.0, n / 12.0))[0]
        edge += np.linspace(0, 1, n) * rng.normal(0, depth * 0.3)  # the page was not scanned square
        mask = np.maximum(mask, np.clip(beyond(side, h, w, edge) + 0.5, 0.0, 1.0))
    return mask


def _border_hide(st: Any, p: dict[str, Any]) -> None:
    st.hide("border", border_mask(p, st.h, st.w, st.rng))


def _border_paint(st: Any, p: dict[str, Any]) -> None:
    m = st.masks["border"]
    level = np.clip(p["level"] * (1.0 + 0.3 * smooth_noise(st.rng, (st.h, st.w), 16.0)), 0.0, 1.0)
    st.v = st.v * (1.0 - m[None]) + (level * m)[None]


BORDER = register(Effect(
    "border", {"width_frac": (0.005, 0.08), "level": (0.0, 0.3), "rough_frac": (0.0, 0.01)}, _draw_border,
    hooks={"geometry": _border_hide, "frame": _border_paint}, geometric=True,
    doc="dark scanner background along 1-4 edges",
))


# --- page edge ----------------------------------------------------------------------------------------------


def _draw_page_edge(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = PAGE_EDGE.ranges
    first = SIDES[int(rng.integers(4))]
    sides = [first]
    if rng.random() < 0.3:  # a corner: two adjacent sides
        others = ("left", "right") if first in ("top", "bottom") else ("top", "bottom")
        sides.append(others[int(rng.integers(2))])
    out = {}
    for s in sides:
        side_len = w if s in ("left", "right") else h
        out[s] = {
            "width": strength(rng, R["width_frac"], k) * side_len,
            "wobble": uniform(rng, R["wobble_frac"]) * side_len,
            "tilt": float(rng.normal(0.0, 0.01)) * side_len,
        }
    rim = ("light", "dark", "none")[int(rng.choice(3, p=[0.45, 0.35, 0.2]))]
    return {
        "sides": out,
        "near": uniform(rng, R["level"]),
        "far": uniform(rng, R["level"]),
        "texture": uniform(rng, R["texture"]),
        "rim": rim,
        "rim_width": uniform(rng, R["rim_width"]),
        "rim_level": uniform(rng, R["rim_light"]) if rim == "light" else uniform(rng, R["rim_dark"]),
    }


def _page_edge_hide(st: Any, p: dict[str, Any]) -> None:
    dists = {}
    rim = p["rim_width"] if p["rim"] != "none" else 0.0
    mask = np.zeros((st.h, st.w), np.float32)
    for side, q in p["sides"].items():
        edge = edge_line(st.rng, _along(side, st.h, st.w), q["width"], q["wobble"], q["tilt"])
        d = beyond(side, st.h, st.w, edge)
        dists[side] = d
        mask = np.maximum(mask, np.clip(d + rim + 0.5, 0.0, 1.0))  # the rim belongs to the edge, not the page
    st.store["page_edge"] = dists
    st.hide("page_edge", mask)


def _page_edge_paint(st: Any, p: dict[str, Any]) -> None:
    tex = 1.0 + p["texture"] * smooth_noise(st.rng, (st.h, st.w), float(st.rng.uniform(4.0, 40.0)), octaves=2)
    for d in st.store["page_edge"].values():
        span = max(1.0, float(d.max()))
        t = np.clip(d / span, 0.0, 1.0)
        level = (p["near"] + (p["far"] - p["near"]) * t) * tex  # what lies under the sheet, lit unevenly
        m = np.clip(d + 0.5, 0.0, 1.0)
        st.v = st.v * (1.0 - m[None]) + (np.clip(level, 0.0, 1.0) * m)[None]
        if p["rim"] != "none":
            r = np.clip(d + p["rim_width"] + 0.5, 0.0, 1.0) * (d <= 0.5)  # a band of rim_width pixels
            st.v = st.v * (1.0 - r[None]) + (p["rim_level"] * r)[None]


PAGE_EDGE = register(Effect(
    "page_edge",
    {"width_frac": (0.02, 0.25), "wobble_frac": (0.0, 0.01), "level": (0.0, 0.35), "texture": (0.0, 0.08),
     "rim_width": (1.0, 4.0), "rim_light": (0.85, 1.0), "rim_dark": (0.1, 0.4)},
    _draw_page_edge, hooks={"geometry": _page_edge_hide, "frame": _page_edge_paint}, geometric=True,
    doc="the sheet ends inside the scan: a dark, unevenly lit background past a page edge with a rim",
))


# --- binding shadow -----------------------------------------------------------------------------------------


def _draw_binding(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = BINDING.ranges
    side = ("left", "right", "top", "bottom")[int(rng.choice(4, p=[0.4, 0.4, 0.1, 0.1]))]
    side_len = w if side in ("left", "right") else h
    return {
        "side": side,
        "pos": uniform(rng, R["pos_frac"]) * side_len,
        "width": strength(rng, R["width_frac"], k) * side_len,
        "depth": strength(rng, R["depth"], k),
        "power": uniform(rng, R["power"]),
        "wobble": uniform(rng, R["wobble_frac"]) * side_len,
    }


def _binding(st: Any, p: dict[str, Any]) -> None:
    side = p["side"]
    edge = edge_line(st.rng, _along(side, st.h, st.w), p["pos"], p["wobble"], 0.0)
    into = np.maximum(0.0, -beyond(side, st.h, st.w, edge))  # distance into the page from the gutter line
    shade = 1.0 - p["depth"] * np.exp(-((into / max(1.0, p["width"])) ** p["power"]))
    st.v = st.v * shade.astype(np.float32)[None]


BINDING = register(Effect(
    "binding",
    {"pos_frac": (-0.05, 0.1), "width_frac": (0.02, 0.2), "depth": (0.2, 0.85), "power": (1.0, 2.5),
     "wobble_frac": (0.0, 0.01)},
    _draw_binding, hooks={"sheet": _binding},
    doc="shadow of a book's binding: the page darkens towards the gutter (its text stays text)",
))


# --- facing page --------------------------------------------------------------------------------------------


def _draw_facing(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = FACING_PAGE.ranges
    side = ("left", "right", "top", "bottom")[int(rng.choice(4, p=[0.45, 0.45, 0.05, 0.05]))]
    side_len = w if side in ("left", "right") else h
    return {
        "side": side,
        "width": strength(rng, R["width_frac"], k) * side_len,
        "wobble": uniform(rng, R["wobble_frac"]) * side_len,
        "gutter": uniform(rng, R["gutter_width"]),
        "gutter_level": uniform(rng, R["gutter_level"]),
        "paper": uniform(rng, R["paper"]),
        "shadow": strength(rng, R["shadow"], k),
        "falloff": uniform(rng, R["falloff"]),
        "page_shadow": uniform(rng, R["page_shadow"]),
        "page_shadow_width": uniform(rng, R["page_shadow_frac"]) * side_len,
        "shift": [int(rng.integers(h)), int(rng.integers(w))],
    }


def _facing_hide(st: Any, p: dict[str, Any]) -> None:
    side = p["side"]
    edge = edge_line(st.rng, _along(side, st.h, st.w), p["width"], p["wobble"], float(st.rng.normal(0, 2.0)))
    d = beyond(side, st.h, st.w, edge)
    st.store["facing_page"] = d
    st.hide("facing_page", np.clip(d + 0.5, 0.0, 1.0))


def _facing_paint(st: Any, p: dict[str, Any]) -> None:
    d = st.store["facing_page"]
    # the main page darkens towards the gutter; its text stays text
    into = np.maximum(0.0, -d)
    st.v = st.v * (1.0 - p["page_shadow"] * np.exp(-into / max(1.0, p["page_shadow_width"])))[None]
    # the facing page: its own paper and text (another part of this sheet's text), shaded towards the gutter
    text = np.roll(st.cov0, tuple(p["shift"]), axis=(0, 1))
    past = np.maximum(0.0, d - p["gutter"])
    shade = 1.0 - p["shadow"] * np.exp(-past / max(1.0, p["falloff"] * p["width"]))
    paper = st.paper_c[:, None, None] * np.float32(p["paper"])
    face = (paper + (st.ink_c[:, None, None] - paper) * text[None]) * shade[None]
    gutter = np.clip(1.0 - np.abs(d - p["gutter"] / 2) / max(0.5, p["gutter"] / 2), 0.0, 1.0)
    face = face * (1.0 - gutter[None]) + p["gutter_level"] * gutter[None]
    m = np.clip(d + 0.5, 0.0, 1.0)
    st.v = st.v * (1.0 - m[None]) + gaussian_blur(np.clip(face, 0.0, 1.0), 0.6) * m[None]


FACING_PAGE = register(Effect(
    "facing_page",
    {"width_frac": (0.02, 0.15), "wobble_frac": (0.0, 0.008), "gutter_width": (2.0, 12.0),
     "gutter_level": (0.05, 0.35), "paper": (0.8, 1.05), "shadow": (0.2, 0.8), "falloff": (0.2, 1.0),
     "page_shadow": (0.0, 0.5), "page_shadow_frac": (0.01, 0.08)},
    _draw_facing, hooks={"geometry": _facing_hide, "frame": _facing_paint}, geometric=True,
    doc="a sliver of the facing page past a dark gutter (background in the ground truth, text and all)",
))
