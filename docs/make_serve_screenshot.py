"""Make docs/serve-page.png: the ``ocrobin serve`` page in split view on a crop of examples/demo-page.png.

Needs the serve extra, Playwright for Python and Debian's Chromium (/usr/bin/chromium), as the browser
test does. Run from the repository root: ``python docs/make_serve_screenshot.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "serve-page.png"
CROP = (40, 180, 1235, 960)  # the handwritten block and the printed heading of the demo page
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    server = subprocess.Popen([sys.executable, "-m", "ocrobin", "serve", "--port", str(port), "-m", "default",
                               "-m", "lstm2-seed", "--workers", "1"], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        with tempfile.TemporaryDirectory() as tmp:
            page_file = Path(tmp) / "demo-crop.png"
            with Image.open(REPO / "examples" / "demo-page.png") as im:
                im.crop(CROP).save(page_file, dpi=im.info.get("dpi", (150, 150)))
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 720})
                page.goto(base)
                page.wait_for_function("() => document.getElementById('model').options.length > 0")
                page.set_input_files("#file", str(page_file))
                page.wait_for_selector("body[data-state=ready]", timeout=120_000)
                page.click("#view-split")
                handle = page.locator("#divider").bounding_box()
                stage = page.locator("#canvas-split").bounding_box()
                assert handle and stage
                y = handle["y"] + handle["height"] / 2
                page.mouse.move(handle["x"] + handle["width"] / 2, y)
                page.mouse.down()
                page.mouse.move(stage["x"] + 0.42 * stage["width"], y, steps=5)
                page.mouse.up()
                page.screenshot(path=str(OUT))
                browser.close()
    finally:
        server.terminate()
        server.wait(15)
    with Image.open(OUT) as shot:
        shot.convert("RGB").quantize(96, method=Image.Quantize.FASTOCTREE).save(OUT, optimize=True)
    print(f"{OUT.relative_to(REPO)}: {OUT.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
