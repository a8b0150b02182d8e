"""Synthetic training pairs: a clean page, degraded to look like an old scan, with its exact ground truth.

Real ground truth is scarce (about 150 pages), so the model learns mostly from pairs made here. A pair is
made in three steps, all driven by ONE seeded :class:`numpy.random.Generator`:

1. a clean ink-coverage page (rendered by :mod:`ocrobin.render`, read from a folder of clean pages, or the
   ground truth of a real pair: :mod:`.sources`);
2. the *geometric* effects (random affine, smooth warp, what hides the page) applied to that coverage;
   thresholding the result gives the ground truth, so it is strictly binary and aligned to the pixel with
   everything that follows;
3. the *photometric* effects (ink, paper, sheet, frame, scanner) that turn the transformed coverage into
   the grey (or RGB) image; they never move a pixel.

Each effect lives in the module of its family (:mod:`.geometry`, :mod:`.ink`, :mod:`.paper`,
:mod:`.sheet`, :mod:`.frame`, :mod:`.scanner`) and registers itself (:mod:`.registry`) with its parameter ranges
(also in ``docs/degrade.md``) and the stage it acts at; :mod:`.pipeline` runs the stages; presets
(:mod:`.presets`) give probabilities. The values drawn for a page are returned as a JSON-ready dict.
"""

from __future__ import annotations

# Effect modules register in this order, which is the order parameters are drawn in: keep it.
from . import geometry, ink, paper, sheet, frame, scanner  # noqa: F401  isort: skip
from .generate import Sample, SynthConfig, contact_sheet, generate, make_sample, page_seed, sample_key
from .pipeline import DARK_INK, MIN_CONTRAST, TONE_RANGES, PageState, degrade, draw_params, stroke_width
from .presets import PRESETS, Preset, get_preset
from .registry import Effect, check_effects, effects, register
from .sources import PageSource, list_clean, list_pair_truths, make_pair

#: Effects in the order they are drawn.
EFFECTS: tuple[str, ...] = tuple(e.name for e in effects())
#: Effects that move pixels or hide page content, and so change the ground truth.
GEOMETRIC: tuple[str, ...] = tuple(e.name for e in effects() if e.geometric)
#: Parameter ranges of the tone and of every effect (the single source of the table in ``docs/degrade.md``).
#: Lengths in pixels unless the name says ``_frac`` (fraction of the page side); levels in [0, 1] (1 = white).
RANGES: dict[str, dict[str, tuple[float, float]]] = {"tone": TONE_RANGES, **{e.name: e.ranges for e in effects()}}

__all__ = [
    "DARK_INK", "EFFECTS", "GEOMETRIC", "MIN_CONTRAST", "PRESETS", "RANGES", "Effect", "PageSource", "PageState",
    "Preset", "Sample", "SynthConfig", "check_effects", "contact_sheet", "degrade", "draw_params", "generate",
    "get_preset", "list_clean", "list_pair_truths", "make_pair", "make_sample", "page_seed", "register",
    "sample_key", "stroke_width",
]
