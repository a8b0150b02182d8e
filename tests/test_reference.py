"""Committed reference outputs: seeded synthetic pages per preset and the default model's result.

A refactor of ``ocrobin.degrade`` or of the inference path must leave these unchanged; an intended
change regenerates them with ``tests/data/make_reference.py`` in the same commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
import make_reference as ref  # noqa: E402

REFERENCE = json.loads((DATA / "reference.json").read_text())


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_seeded_degradation_is_unchanged(case: str) -> None:
    preset, mode, seed = case.split("/")
    img, ink = ref.degraded(preset, int(seed), mode == "rgb")
    assert ref.digest(img, ink) == REFERENCE[case], f"{case}: degraded page differs from the reference"


def test_every_preset_is_pinned() -> None:
    from ocrobin.degrade import PRESETS

    assert {k.split("/")[0] for k in REFERENCE} == set(PRESETS)


def test_default_model_output_is_unchanged() -> None:
    from ocrobin import Binarizer

    expected = ~np.asarray(Image.open(DATA / "default-model.png").convert("1"))
    ink = Binarizer().binarize(ref.model_input()) > 0.5
    # float results may differ in the last bits between CPUs; a pixel or two near the cut may flip
    assert ink.shape == expected.shape
    assert (ink != expected).mean() < 1e-4
