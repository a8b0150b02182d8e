"""Scanner effects: the capture and the file (blur, sensor noise, dust, tone curve, JPEG)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..render import gaussian_blur
from .registry import Effect, register, strength, uniform


def _draw_sigma(effect: str) -> Any:
    def draw(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
        from .registry import get

        return {"sigma": strength(rng, get(effect).ranges["sigma"], k)}

    return draw


def _blur(st: Any, p: dict[str, Any]) -> None:
    st.v = gaussian_blur(np.clip(st.v, 0.0, 1.0), p["sigma"])


BLUR = register(Effect(
    "blur", {"sigma": (0.3, 1.8)}, _draw_sigma("blur"), hooks={"scanner": _blur},
    doc="focus, optics (the original's)",
))


def _noise(st: Any, p: dict[str, Any]) -> None:
    st.v = st.v + p["sigma"] * st.rng.standard_normal(st.v.shape, dtype=np.float32)


NOISE = register(Effect(
    "noise", {"sigma": (0.005, 0.04)}, _draw_sigma("noise"), hooks={"scanner": _noise}, doc="sensor noise",
))


def _draw_speckle(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = SPECKLE.ranges
    return {
        "density": strength(rng, R["density"], k),
        "radius": uniform(rng, R["radius"]),
        "dark_fraction": uniform(rng, R["dark_fraction"]),
    }


def speckle(v: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Small irregular dark and light specks (dust and paper defects, not ink)."""
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
    level = rng.uniform(0.4, 1.0, n)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    jitter = rng.uniform(0.5, 1.3, (n, 6))
    for i in range(n):  # small irregular hexagons, not perfect dots
        r = rs[i] * jitter[i]
        poly = np.stack([xs[i] + r * np.cos(angles), ys[i] + r * np.sin(angles)], axis=1)
        (dd if is_dark[i] else ld).polygon(poly.ravel().tolist(), fill=int(255 * level[i]))
    md = np.asarray(dark.reduce(ss), np.float32) / 255.0
    ml = np.asarray(light.reduce(ss), np.float32) / 255.0
    level_d = float(rng.uniform(0.05, 0.35))
    level_l = float(rng.uniform(0.85, 1.0))
    v = v * (1.0 - md) + level_d * md
    return v * (1.0 - ml) + level_l * ml


def _speckle(st: Any, p: dict[str, Any]) -> None:
    st.v = speckle(st.v, p, st.rng)


SPECKLE = register(Effect(
    "speckle", {"density": (2e-5, 5e-4), "radius": (0.4, 1.2), "dark_fraction": (0.5, 1.0)}, _draw_speckle,
    hooks={"scanner": _speckle}, doc="dust, dirt specks, paper defects (not ink in the ground truth)",
))


def _draw_gamma(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    lo, hi = GAMMA.ranges["gamma"]
    return {"gamma": float(math.exp(rng.uniform(math.log(lo), math.log(hi))))}


def _gamma(st: Any, p: dict[str, Any]) -> None:
    st.v = np.clip(st.v, 0.0, 1.0) ** np.float32(p["gamma"])


GAMMA = register(Effect(
    "gamma", {"gamma": (0.6, 1.6)}, _draw_gamma, hooks={"scanner": _gamma}, doc="scanner tone curve",
))


def _draw_jpeg(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    lo, hi = JPEG.ranges["quality"]
    return {"quality": int(round(hi - (hi - lo) * rng.random() ** k))}


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (uint8, grey or RGB) after a JPEG round trip at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert(Image.fromarray(img).mode))


def _jpeg(st: Any, p: dict[str, Any]) -> None:
    st.img = jpeg(st.img, p["quality"])


JPEG = register(Effect(
    "jpeg", {"quality": (15, 85)}, _draw_jpeg, hooks={"encoded": _jpeg}, doc="JPEG artefacts (8×8 blocks, ringing)",
))
