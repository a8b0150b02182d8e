"""The registry of degradation effects: one :class:`Effect` per effect, in the order they are drawn.

Adding an effect means writing one module that registers it; the list of effects, their parameter ranges
and their place in the pipeline follow from the registry, and presets only give probabilities (an effect
a preset does not name never happens). Registration order is fixed by the import order in
``ocrobin.degrade``: it is the order in which parameters are drawn from a page's generator, so changing it
changes every seeded page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import UsageError

if TYPE_CHECKING:
    from .pipeline import PageState

#: Pipeline stages in the order they run. ``tone``: read when the tone is drawn or the page composited
#: (no hook); ``geometry``: shapes the ground truth (after the mesh transform of affine/warp); ``ink``:
#: how much paper each pixel's ink covers; ``paper``: the paper layer under the ink; ``sheet``: what
#: happened to the composited sheet; ``frame``: what lies around and beyond the page; ``scanner``: the
#: capture; ``encoded``: the 8-bit file.
STAGES = ("tone", "geometry", "ink", "paper", "sheet", "frame", "scanner", "encoded")

Draw = Callable[[np.random.Generator, int, int, float], dict[str, Any]]
Hook = Callable[["PageState", dict[str, Any]], None]


@dataclass(frozen=True)
class Effect:
    """One degradation effect.

    Attributes:
        name: the name in presets, ``--disable`` and the JSON record.
        ranges: documented parameter ranges (the single source of the table in ``docs/degrade.md``).
        draw: draws the effect's parameters for a page: ``(rng, height, width, skew) -> params``.
        hooks: stage name → function applying the effect to the page state at that stage.
        geometric: it moves pixels or hides page content, so it changes the ground truth.
        doc: what it imitates (one line).
    """

    name: str
    ranges: dict[str, tuple[float, float]]
    draw: Draw
    hooks: dict[str, Hook] = field(default_factory=dict)
    geometric: bool = False
    doc: str = ""


_EFFECTS: dict[str, Effect] = {}


def register(effect: Effect) -> Effect:
    """Add ``effect`` after the ones registered so far.

    Raises:
        ValueError: the name is taken or a hook names an unknown stage.
    """
    if effect.name in _EFFECTS:
        raise ValueError(f"effect {effect.name!r} registered twice")
    bad = set(effect.hooks) - set(STAGES)
    if bad:
        raise ValueError(f"effect {effect.name!r}: unknown stage(s) {sorted(bad)}")
    _EFFECTS[effect.name] = effect
    return effect


def effects() -> list[Effect]:
    """All effects in registration (= drawing) order."""
    return list(_EFFECTS.values())


def get(name: str) -> Effect:
    """The effect called ``name``."""
    return _EFFECTS[name]


def hooks(stage: str) -> list[tuple[str, Hook]]:
    """(effect name, hook) of every effect acting at ``stage``, in registration order."""
    return [(e.name, e.hooks[stage]) for e in _EFFECTS.values() if stage in e.hooks]


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
        if n not in _EFFECTS:
            raise UsageError(f"unknown effect {n!r} (known: {', '.join(_EFFECTS)})")
        out.append(n)
    return out


# --- drawing helpers shared by the effect modules -------------------------------------------------------


def strength(rng: np.random.Generator, rng_range: tuple[float, float], skew: float = 1.0) -> float:
    """A strength drawn from a range: ``skew`` > 1 favours the low end, < 1 the high end."""
    lo, hi = rng_range
    return float(lo + (hi - lo) * rng.random() ** skew)


def uniform(rng: np.random.Generator, rng_range: tuple[float, float]) -> float:
    """A value drawn uniformly from a range (strength does not apply)."""
    return float(rng.uniform(*rng_range))


def round_params(obj: Any) -> Any:
    """Round floats for the JSON record (4 significant decimals is plenty to reproduce a look)."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: round_params(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_params(v) for v in obj]
    if isinstance(obj, np.generic):
        return round_params(obj.item())
    return obj
