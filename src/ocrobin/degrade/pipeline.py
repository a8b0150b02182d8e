"""The degradation pipeline: draws a page's parameters and runs the registered effects stage by stage.

Only what spans effects lives here: the tone (paper and ink levels), the mesh transform of ``affine`` and
``warp``, the ground truth, the legibility limits, the contrast guard and the final 8-bit image. Every
random choice comes from the page's one generator, in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry
from .geometry import mesh_transform
from .ink import CLEAN_KEEP
from .paper import INK_SHIFTS, PAPER_SHIFTS
from .presets import get_preset
from .registry import check_effects, round_params, uniform

#: Share of pages with black-ish ink (level in ``TONE_RANGES["dark_ink"]``) when contrast is not low.
DARK_INK = 0.33
#: Ranges of the tone drawn for every page (levels in [0, 1], 1 = white).
TONE_RANGES: dict[str, tuple[float, float]] = {"paper": (0.45, 0.95), "difference": (0.25, 0.95),
                                               "dark_ink": (0.0, 0.15)}
#: Ink-paper difference that fading may not go below (a page's own contrast may be as low as 0.1).
MIN_CONTRAST = 0.07


def draw_params(
    rng: np.random.Generator,
    shape: tuple[int, int],
    preset: str = "default",
    rgb: bool = False,
    only: Iterable[str] | None = None,
    disable: Iterable[str] = (),
    force: Iterable[str] = (),
) -> dict[str, Any]:
    """Draw the parameters of one degradation.

    Args:
        rng: the page's random generator.
        shape: (height, width) of the page.
        preset: a name from :data:`ocrobin.degrade.PRESETS`; sets probabilities, strength skew and tone.
        rgb: colour output (the ``color`` effect is drawn only then).
        only: if given, exactly these effects are on (probability 1), whatever the preset says.
        disable: effects that are never on.
        force: effects drawn with probability 1, the others as the preset says (pages made to train one
            weakness, e.g. every page with an ``inverted_band``); a ``clean`` page still keeps only its
            own few effects.

    Returns:
        ``{"preset", "tone": {"paper", "ink"}, "effects": {name: {...}}}``, JSON-ready.

    Raises:
        UsageError: unknown preset or effect name.
    """
    pre = get_preset(preset)
    h, w = int(shape[0]), int(shape[1])
    off = set(check_effects(disable))
    forced = set(check_effects(force))
    chosen = set(check_effects(only)) if only is not None else None
    effects: dict[str, Any] = {}
    for eff in registry.effects():
        name = eff.name
        p = (1.0 if name in chosen else 0.0) if chosen is not None else pre.probs.get(name, 0.0)
        if name in forced:
            p = 1.0
        hit = rng.random() < p
        if not hit or name in off or (name == "color" and not rgb):
            continue
        effects[name] = eff.draw(rng, h, w, pre.skew)
    clean = effects.get("clean")
    if clean is not None:
        effects = {k: v for k, v in effects.items() if k in CLEAN_KEEP}
        effects["blur"] = {"sigma": clean["blur"]}
        if "noise" in effects:
            effects["noise"]["sigma"] = min(effects["noise"]["sigma"], 0.015)
    if clean is not None:
        tone = {"paper": clean["paper"], "ink": clean["ink"]}
    elif pre.plain and chosen is None:
        tone = {"paper": 1.0, "ink": 0.0}
    else:
        # Paper mostly 0.65-0.9; ink black-ish on a third of the pages, otherwise an ink-paper difference
        # drawn log-uniform: after the effects this matches the DIBCO pages, where ink is often grey.
        lo, hi = TONE_RANGES["paper"]
        paper = hi - (hi - lo) * rng.random() ** 1.7
        dlo, dhi = TONE_RANGES["difference"]
        min_diff = registry.get("low_contrast").ranges["difference"][0]
        if "low_contrast" in effects:
            diff = effects["low_contrast"]["difference"]
        elif rng.random() < DARK_INK:
            diff = paper - uniform(rng, TONE_RANGES["dark_ink"])
        else:
            diff = float(math.exp(rng.uniform(math.log(dlo), math.log(max(dlo, min(dhi, paper))))))
        tone = {"paper": paper, "ink": max(0.0, paper - max(diff, min_diff))}
    return {"preset": preset, "tone": tone, "effects": effects}


def paper_and_ink(params: dict[str, Any], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Paper and ink colours (one value per channel) from the tone and the ``color`` effect."""
    tone = params["tone"]
    paper = np.full(channels, tone["paper"], np.float32)
    ink = np.full(channels, tone["ink"], np.float32)
    col = params["effects"].get("color")
    if col is not None and channels == 3:
        s = col["saturation"]
        ps = np.array(PAPER_SHIFTS[col["paper"]], np.float32)
        ks = np.array(INK_SHIFTS[col["ink"]], np.float32)
        paper = paper + s * (ps - ps.mean())
        ink = ink + s * (ks - ks.mean())
    return np.clip(paper, 0.0, 1.0), np.clip(ink, 0.0, 1.0)


@dataclass
class PageState:
    """What the effects of one page read and change, stage by stage.

    Attributes:
        rng: the page's generator (noise fields are drawn from it in stage order).
        cov0: the clean coverage before geometry (the default back of the sheet for bleed-through).
        cov: coverage after geometry, quantised as the ground truth sees it.
        ink: the ground truth (True = text).
        masks: soft masks (1 = not the page) of the geometric effects that hide page content, by effect.
        hidden: their union.
        alpha: how much of the paper each pixel's ink covers, as seen.
        paper_c, ink_c: paper and ink colours per channel.
        paper: the paper layer (C×H×W), under the ink.
        v: the composited page (C×H×W), float.
        inverted_mask, inverted_boxes: light-on-dark regions (kept out of the contrast guard).
        img: the 8-bit image (``encoded`` stage).
        store: what an effect keeps between its own hooks (by effect name).
    """

    rng: np.random.Generator
    params: dict[str, Any]
    channels: int
    cov0: np.ndarray
    verso: np.ndarray | None = None
    cov: np.ndarray | None = None
    ink: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    hidden: np.ndarray | None = None
    alpha: np.ndarray | None = None
    paper_c: np.ndarray | None = None
    ink_c: np.ndarray | None = None
    paper: np.ndarray | None = None
    v: np.ndarray | None = None
    inverted_mask: np.ndarray | None = None
    inverted_boxes: list[list[int]] = field(default_factory=list)
    img: np.ndarray | None = None
    store: dict[str, Any] = field(default_factory=dict)

    @property
    def h(self) -> int:
        return int(self.cov0.shape[0])

    @property
    def w(self) -> int:
        return int(self.cov0.shape[1])

    @property
    def effects(self) -> dict[str, Any]:
        return self.params["effects"]

    def hide(self, name: str, mask: np.ndarray) -> None:
        """Hide the page under ``mask`` (1 = not the page): no ink there in the ground truth."""
        assert self.cov is not None
        self.masks[name] = mask
        self.hidden = mask if self.hidden is None else np.maximum(self.hidden, mask)
        self.cov = self.cov * (1.0 - mask)

    def verso_or_self(self) -> np.ndarray:
        """Coverage of the other side of the sheet (default: this page's own)."""
        return self.cov0 if self.verso is None else np.asarray(self.verso, np.float32)


def _run(stage: str, st: PageState) -> None:
    for name, hook in registry.hooks(stage):
        if name in st.effects:
            hook(st, st.effects[name])


def stroke_width(ink: np.ndarray) -> float:
    """Typical stroke width in pixels: twice the ink area over its boundary length (inf without ink)."""
    n = int(ink.sum())
    if n == 0:
        return float("inf")
    inner = ink[1:-1, 1:-1] & ink[:-2, 1:-1] & ink[2:, 1:-1] & ink[1:-1, :-2] & ink[1:-1, 2:]
    edge = n - int(inner.sum())
    return 2.0 * n / max(1, edge)


def grow(mask: np.ndarray, r: int) -> np.ndarray:
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


def _limit_for_legibility(st: PageState) -> None:
    """Blur no wider than the strokes, fading and noise no deeper than the contrast."""
    eff = st.effects
    assert st.ink is not None
    sw = stroke_width(st.ink)
    diff = max(1e-3, st.params["tone"]["paper"] - st.params["tone"]["ink"])
    for name, key, limit in (
        ("blur", "sigma", 0.2 + 0.45 * sw),
        ("ink_spread", "sigma", 0.2 + 0.4 * sw),
        ("noise", "sigma", diff / 3.0),
    ):
        if name in eff and eff[name][key] > limit:
            eff[name][key] = limit
    if "fade" in eff:
        eff["fade"]["floor"] = max(eff["fade"]["floor"], min(1.0, MIN_CONTRAST / diff))


def _contrast_stretch(st: PageState) -> float:
    """Factor (≥ 1, at most 2.5) that brings the mean ink-paper difference up to :data:`MIN_CONTRAST`."""
    assert st.ink is not None and st.v is not None
    ink = st.ink
    valid = np.ones(ink.shape, bool)
    for y0, x0, bh, bw in st.inverted_boxes:
        valid[max(0, y0 - 4) : y0 + bh + 4, max(0, x0 - 4) : x0 + bw + 4] = False
    if st.hidden is not None:
        valid &= st.hidden < 0.01
    core = ink & ~grow(~ink, 1) & valid
    paper = ~grow(ink, 3) & valid
    if core.sum() < 20 or paper.sum() < 20:
        return 1.0
    lum = st.v.mean(axis=0)
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
    st = PageState(rng, params, 3 if rgb else 1, cov0, verso)

    # 1. geometry: the ground truth is the thresholded transformed page.
    st.cov = mesh_transform(cov0, st.effects, rng)
    _run("geometry", st)
    q = np.round(np.clip(st.cov, 0.0, 1.0) * 255.0).astype(np.uint8)
    st.ink = q >= 128
    st.cov = q.astype(np.float32) * np.float32(1.0 / 255.0)
    _limit_for_legibility(st)

    # 2. ink: how much of the paper each pixel's ink covers, as seen (not as labelled).
    st.alpha = st.cov
    _run("ink", st)

    # 3. paper (under the ink), then the ink on top.
    st.paper_c, st.ink_c = paper_and_ink(params, st.channels)
    st.paper = np.broadcast_to(st.paper_c[:, None, None], (st.channels, h, w)).astype(np.float32)
    _run("paper", st)
    st.v = st.paper + (st.ink_c[:, None, None] - st.paper) * st.alpha[None]

    # 4. what happened to the sheet, and what lies around it.
    _run("sheet", st)
    _run("frame", st)

    # Effects multiply: keep the average stroke at least MIN_CONTRAST darker than the paper around it.
    stretch = _contrast_stretch(st)
    if stretch > 1.0:
        level = float(st.paper_c.mean())
        keep = st.inverted_mask if st.inverted_mask is not None else np.float32(0.0)
        st.v = st.v + (1.0 - keep) * ((level - st.v) + (st.v - level) * np.float32(stretch))
        params["tone"]["stretch"] = stretch

    # 5. the scanner, then the file. With white paper, black ink and no photometric effect the image is
    # exactly 255 - q: grey < 128 iff ink.
    _run("scanner", st)
    img = np.round(np.clip(st.v, 0.0, 1.0) * 255.0).astype(np.uint8)
    st.img = np.ascontiguousarray(np.moveaxis(img, 0, -1)) if rgb else np.ascontiguousarray(img[0])
    _run("encoded", st)
    return st.img, st.ink, round_params(params)
