"""Geometric effects that move pixels: ``affine`` and ``warp``, applied together by the pipeline as one
mesh transform (one resampling, so edges stay sharp). Effects that hide page content are in :mod:`.frame`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from .registry import Effect, register, strength, uniform


def _draw_affine(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = AFFINE.ranges
    return {
        "tx": uniform(rng, R["translate_frac"]),
        "ty": uniform(rng, R["translate_frac"]),
        "rotate": uniform(rng, R["rotate_deg"]),
        "scale": uniform(rng, R["scale"]),
        "aniso": uniform(rng, R["aniso"]),
    }


AFFINE = register(Effect(
    "affine",
    {"translate_frac": (-0.05, 0.05), "rotate_deg": (-2.0, 2.0), "scale": (-0.1, 0.1), "aniso": (-0.1, 0.1)},
    _draw_affine,
    geometric=True,
    doc="page placed askew on the scanner",
))


def _draw_warp(rng: np.random.Generator, h: int, w: int, k: float) -> dict[str, Any]:
    R = WARP.ranges
    return {"amplitude": strength(rng, R["amplitude"], k), "cell": uniform(rng, R["cell"])}


WARP = register(Effect(
    "warp", {"amplitude": (0.3, 3.0), "cell": (24.0, 160.0)}, _draw_warp, geometric=True,
    doc="paper not flat, uneven handwriting baseline",
))


def affine_inverse(p: dict[str, Any], h: int, w: int) -> np.ndarray:
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


def mesh_transform(cov: np.ndarray, eff: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Apply affine and warp as one mesh transform (one resampling, so edges stay sharp)."""
    h, w = cov.shape
    if "affine" not in eff and "warp" not in eff:
        return cov
    m = affine_inverse(eff["affine"], h, w) if "affine" in eff else np.array([[1.0, 0, 0], [0, 1.0, 0]])
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
                sx[i, j], sy[i, j], sx[i + 1, j], sy[i + 1, j],
                sx[i + 1, j + 1], sy[i + 1, j + 1], sx[i, j + 1], sy[i, j + 1],
            )
            mesh.append((box, tuple(float(v) for v in quad)))
    out = Image.fromarray(cov.astype(np.float32)).transform(
        (w, h), Image.Transform.MESH, mesh, Image.Resampling.BILINEAR
    )
    return np.asarray(out, dtype=np.float32)
