"""Re-create the bundled demo page ``examples/demo-page.png`` from a fixed seed.

The page is ours: text rendered with the installed fonts (see ``make fonts``), then aged with
:mod:`ocrobin.degrade`. Run: ``python examples/make_demo_page.py [SEED]``. Different fonts or library
versions give a slightly different page, which is why the result itself is committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ocrobin.degrade import degrade
from ocrobin.render import render_page

OUT = Path(__file__).with_name("demo-page.png")


def main(seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    clean = render_page(rng, (1650, 1275), kind="mixed", xheight=13)
    verso = render_page(rng, (1650, 1275), kind="print", xheight=12)
    gray, _ink, _params = degrade(clean, rng, "heavy", verso=verso)
    Image.fromarray(gray).save(OUT, dpi=(150, 150), optimize=True)
    print(f"{OUT}: {gray.shape[1]}×{gray.shape[0]} at 150 dpi")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
