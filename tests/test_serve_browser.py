"""The ``ocrobin serve`` page in a real browser: Debian's Chromium, driven by Playwright, against a real server.

The server is ``python -m ocrobin serve`` on a free port of 127.0.0.1, started and stopped here. One test
uploads a page, waits for the result, moves the threshold slider with the mouse and checks that the
displayed result changes without another request, tries the split view and its divider, downloads the
TIFF, and saves a screenshot under the test's tmp dir; another gives the page a server's token and
a TIFF, which the browser cannot show (the page shows the server-decoded grey page). They skip
only where Chromium or Playwright is absent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from .conftest import REPO, text_page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (Debian package chromium; .ci/run installs it)", allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Starts real ``ocrobin serve`` processes on loopback: ``serve(*flags)`` gives (base URL, its stderr log)."""
    procs: list[subprocess.Popen] = []

    def start(*flags: str) -> tuple[str, Path]:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
        with open(log, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "ocrobin", "serve", "--host", "127.0.0.1", "--port",
                                     str(port), "-m", "lstm2-seed", "--workers", "1", "--threads", "1", *flags],
                                    stdout=subprocess.DEVNULL, stderr=err, env=env)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "healthz", timeout=2) as r:
                    if r.status == 200:
                        return base, log
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.2)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def browser() -> Iterator:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def ink_pixels(page, canvas_id: str) -> int:  # noqa: ANN001
    """Dark opaque pixels on a canvas of the page."""
    return page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255 && d[i] < 128) n++;
        return n;
    }""", canvas_id)


def split_halves(page) -> dict:  # noqa: ANN001
    """Opaque pixels of the split canvas, left and right of the divider: how many are neither black nor white."""
    return page.evaluate("""() => {
        const c = document.getElementById("canvas-split");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const x0 = Math.round(c.width * Number(document.getElementById("divider").style.left.slice(0, -1)) / 100);
        const out = {left: 0, leftGrey: 0, right: 0, rightGrey: 0};
        for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
            const i = 4 * (y * c.width + x);
            if (d[i + 3] !== 255 || Math.abs(x - x0) < 3) continue;
            const grey = d[i] !== 0 && d[i] !== 255;
            if (x < x0) { out.left++; out.leftGrey += grey; } else { out.right++; out.rightGrey += grey; }
        }
        return out;
    }""")


def test_page_upload_threshold_split_download(serve, browser, tmp_path):
    base, log = serve()
    src = tmp_path / "page.png"
    Image.fromarray(text_page(h=240, w=360, seed=5)).save(src, dpi=(300, 300))
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1200, "height": 700}, accept_downloads=True)
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.goto(base)
    page.wait_for_function("() => document.getElementById('model').options.length > 0")
    page.set_input_files("#file", str(src))
    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    assert "confidence" in page.inner_text("#info")
    posts = [r for r in requests if r.startswith("POST ")]
    assert len(posts) == 1 and "format=prob" in posts[0]

    before = ink_pixels(page, "canvas-result")
    box = page.locator("#threshold").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 0.12 * box["width"], box["y"] + box["height"] / 2)
    threshold = page.input_value("#threshold")
    assert float(threshold) < 0.3 and page.inner_text("#threshold-value") == f"{float(threshold):.2f}"
    after = ink_pixels(page, "canvas-result")
    assert after > before > 0  # a lower threshold shows more ink
    assert len([r for r in requests if r.startswith("POST ")]) == 1  # re-thresholded in the browser

    with page.expect_response(lambda r: "resize=0.5" in r.url) as answer:
        page.select_option("#resize", "0.5")  # a new scale for the model: one more run, at the page's size
    assert answer.value.status == 200 and answer.value.headers["x-ocrobin-size"] == "360x240"
    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    posts = [r for r in requests if r.startswith("POST ")]
    assert len(posts) == 2 and "format=prob" in posts[1]
    with page.expect_response(lambda r: "/v1/binarize" in r.url and "resize" not in r.url):
        page.select_option("#resize", "1")
    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    assert ink_pixels(page, "canvas-result") == after  # back at scale 1, the same result as before

    page.click("#view-split")
    halves = split_halves(page)
    assert halves["left"] > 0 and halves["leftGrey"] > 0  # the grey original on the left
    assert halves["right"] > 0 and halves["rightGrey"] == 0  # the 1-bit result on the right
    handle = page.locator("#divider").bounding_box()
    assert handle is not None
    stage = page.locator("#canvas-split").bounding_box()
    assert stage is not None
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(stage["x"] + 0.25 * stage["width"], handle["y"] + handle["height"] / 2, steps=5)
    page.mouse.up()
    assert abs(float(page.eval_on_selector("#divider", "d => d.style.left").rstrip("%")) - 25) < 2
    page.screenshot(path=str(tmp_path / "serve-page.png"))

    with page.expect_download() as dl:
        page.click("#download-tif")
    saved = tmp_path / "download.tif"
    dl.value.save_as(saved)
    assert dl.value.suggested_filename == "page.bin.tif"

    req = urllib.request.Request(f"{base}v1/binarize?format=tif&threshold={threshold}", data=src.read_bytes(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert saved.read_bytes() == r.read()
    external = [r for r in requests if not r.split(" ", 1)[1].startswith((base, "blob:", "data:"))]
    assert external == []
    with Image.open(tmp_path / "serve-page.png") as shot:
        assert shot.size == (1200, 700)
    assert "GET / 200" in log.read_text() and "POST /v1/binarize 200" in log.read_text()


def test_token_and_a_tiff_the_browser_cannot_show(serve, browser, tmp_path):
    base, _ = serve("--token", "tok-123")
    src = tmp_path / "page.tif"
    Image.fromarray(text_page(seed=6)).save(src)
    page = browser.new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(base)
    page.wait_for_selector("#token-dialog[open]")
    page.fill("#token-input", "wrong")
    page.click("#token-ok")
    page.wait_for_function("() => document.getElementById('token-dialog').open && "
                           "document.getElementById('token-message').textContent.includes('not accepted')")
    page.fill("#token-input", "tok-123")
    page.click("#token-ok")
    page.wait_for_function("() => document.getElementById('model').options.length > 0")
    assert page.evaluate("sessionStorage.getItem('ocrobin-token')") == "tok-123"
    page.set_input_files("#file", str(src))
    page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    assert sorted(u.split("format=")[1].split("&")[0] for u in posts) == ["gray", "prob"]
    assert ink_pixels(page, "canvas-original") > 0  # the server-decoded page is shown as the original
    page.reload()  # the same tab keeps the token: no question asked again
    page.wait_for_function("() => document.getElementById('model').options.length > 0")
    assert not page.is_visible("#token-dialog")
