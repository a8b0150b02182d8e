"""Degradation presets: how often each effect occurs and how strong it tends to be."""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import UsageError


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
            "affine": 0.8, "warp": 0.3, "border": 0.05, "ink_spread": 0.4, "fade": 0.3, "broken": 0.1,
            "ink_noise": 0.5, "low_contrast": 0.05, "texture": 0.7, "color": 1.0, "bleed": 0.2,
            "inverted": 0.03, "stains": 0.15, "fold": 0.05, "illumination": 0.4, "blur": 0.6, "noise": 0.5,
            "speckle": 0.2, "gamma": 0.3, "jpeg": 0.2,
            "clean": 0.2, "bleed_sharp": 0.05, "rulings": 0.1, "inverted_band": 0.02, "page_edge": 0.06,
            "binding": 0.08, "facing_page": 0.04,
        },
        skew=2.0,
        doc="fewer and weaker effects",
    ),
    "default": Preset(
        {
            "affine": 1.0, "warp": 0.5, "border": 0.15, "ink_spread": 0.5, "fade": 0.5, "broken": 0.25,
            "ink_noise": 0.7, "low_contrast": 0.12, "texture": 0.9, "color": 1.0, "bleed": 0.45,
            "inverted": 0.08, "stains": 0.35, "fold": 0.15, "illumination": 0.6, "blur": 0.8, "noise": 0.7,
            "speckle": 0.35, "gamma": 0.5, "jpeg": 0.35,
            "clean": 0.12, "bleed_sharp": 0.12, "rulings": 0.15, "inverted_band": 0.04, "page_edge": 0.12,
            "binding": 0.15, "facing_page": 0.08,
        },
        doc="the mix used for training",
    ),
    "heavy": Preset(
        {
            "affine": 1.0, "warp": 0.7, "border": 0.3, "ink_spread": 0.6, "fade": 0.7, "broken": 0.4,
            "ink_noise": 0.9, "low_contrast": 0.25, "texture": 1.0, "color": 1.0, "bleed": 0.7,
            "inverted": 0.15, "stains": 0.6, "fold": 0.3, "illumination": 0.8, "blur": 0.9, "noise": 0.9,
            "speckle": 0.5, "gamma": 0.6, "jpeg": 0.5,
            "clean": 0.05, "bleed_sharp": 0.2, "rulings": 0.25, "inverted_band": 0.08, "page_edge": 0.2,
            "binding": 0.25, "facing_page": 0.15,
        },
        skew=0.6,
        doc="more and stronger effects",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        UsageError: unknown preset (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
