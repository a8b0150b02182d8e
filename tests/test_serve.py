"""``ocrobin serve`` API: answers equal the CLI's files byte for byte, and every error code has its cause.

Requests go to the app in this process through httpx's ASGI transport (no socket). Busy and slow model
runs are made with a gated binarizer whose run waits for the test to let it go, so the 503 and 504 tests
wait for nothing but the request timeout they set.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from ocrobin.cli import main  # noqa: E402
from ocrobin.infer import Binarizer  # noqa: E402
from ocrobin.serve import Limits, create_app  # noqa: E402

from .conftest import text_page  # noqa: E402

FAST = ["-m", "lstm2-seed", "--no-progress"]
TOKEN = "s3cret-token"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def seed() -> Binarizer:
    return Binarizer("lstm2-seed")


@pytest.fixture(scope="module")
def page_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "page.png"
    Image.fromarray(text_page()).save(path, dpi=(300, 300))
    return path


def client(app) -> httpx.AsyncClient:  # noqa: ANN001
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def cli_outputs(src: Path, out: Path, *extra: str) -> Path:
    assert main(["binarize", str(src), "-o", str(out), *extra, *FAST]) == 0
    return out


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w × h pixels, with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


class Gated:
    """A binarizer whose runs wait until ``gate`` is set (at most 20 s), counting them."""

    def __init__(self, inner: Binarizer) -> None:
        self.inner = inner
        self.info = inner.info
        self.name = inner.name
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.calls += 1
        self.started.set()
        self.gate.wait(20)
        return self.inner.run(*args, **kwargs)


async def until(cond, what: str) -> None:  # noqa: ANN001
    for _ in range(400):
        if cond():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


# --- success: the CLI's bytes ---------------------------------------------------------------------


async def test_png_tif_prob_equal_cli_bytes(seed, page_png, tmp_path):
    out = cli_outputs(page_png, tmp_path / "png", "--prob")
    tif = cli_outputs(page_png, tmp_path / "tif", "--format", "tif")
    data = page_png.read_bytes()
    async with client(create_app([seed])) as c:
        r_png = await c.post("/v1/binarize", content=data, headers={"Content-Type": "image/png"})
        r_tif = await c.post("/v1/binarize?format=tif", content=data)
        r_prob = await c.post("/v1/binarize?format=prob", content=data)
    assert r_png.status_code == 200 and r_png.headers["content-type"] == "image/png"
    assert r_png.content == (out / "page.bin.png").read_bytes()
    assert r_tif.headers["content-type"] == "image/tiff"
    assert r_tif.content == (tif / "page.bin.tif").read_bytes()
    assert r_prob.content == (out / "page.prob.png").read_bytes()
    with Image.open(io.BytesIO(r_tif.content)) as im:
        assert im.mode == "1" and im.info["compression"] == "group4"
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    h = r_png.headers
    assert 0.0 <= float(h["x-ocrobin-confidence"]) <= 1.0
    assert h["x-ocrobin-polarity"] == "normal"
    assert h["x-ocrobin-model"] == "lstm2-seed"
    assert h["x-ocrobin-size"] == "160x96"
    assert float(h["x-ocrobin-seconds"]) > 0
    assert set(h["x-ocrobin-flags"].split(",")) - {""} <= {"blank", "inverted", "inverted-regions",
                                                         "low-confidence", "ink-fraction-unusual"}
    assert {p.split(";")[0] for p in h["server-timing"].split(", ")} == {"queue", "decode", "model", "encode"}


async def test_threshold_polarity_and_multipart_equal_cli(seed, page_png, tmp_path):
    out = cli_outputs(page_png, tmp_path / "o", "--threshold", "0.3", "--polarity", "inverted")
    want = (out / "page.bin.png").read_bytes()
    data = page_png.read_bytes()
    async with client(create_app([seed])) as c:
        raw = await c.post("/v1/binarize?threshold=0.3&polarity=inverted", content=data)
        # the client's file name is never used: a path in it changes nothing
        form = await c.post("/v1/binarize?threshold=0.3&polarity=inverted",
                            files={"file": ("../../../etc/passwd", data, "image/png")},
                            data={"note": "other fields are ignored"})
        plain = await c.post("/v1/binarize", content=data)
    assert raw.content == want and form.content == want
    assert raw.headers["x-ocrobin-polarity"] == "inverted"
    assert plain.content != want


async def test_resize_equals_cli(seed, page_png, tmp_path):
    out = cli_outputs(page_png, tmp_path / "o", "--resize", "0.5")
    data = page_png.read_bytes()
    async with client(create_app([seed])) as c:
        small = await c.post("/v1/binarize?resize=0.5", content=data)
        plain = await c.post("/v1/binarize", content=data)
        bad = [await c.post(f"/v1/binarize?resize={v}", content=data) for v in ("0", "-1", "nan", "9")]
    assert small.content == (out / "page.bin.png").read_bytes() != plain.content
    assert small.headers["x-ocrobin-size"] == plain.headers["x-ocrobin-size"]  # answered at the page's size
    assert [r.status_code for r in bad] == [400] * 4 and all("resize" in r.json()["error"] for r in bad)


async def test_tiff_upload_and_gray_page(seed, tmp_path):
    src = tmp_path / "scan.tif"
    Image.fromarray(text_page(seed=3)).save(src, dpi=(200, 200))
    out = cli_outputs(src, tmp_path / "o", "--format", "tif")
    async with client(create_app([seed])) as c:
        r = await c.post("/v1/binarize?format=tif", content=src.read_bytes())
        g = await c.post("/v1/binarize?format=gray", content=src.read_bytes())
    assert r.content == (out / "scan.bin.tif").read_bytes()
    assert g.status_code == 200 and g.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(g.content)) as im:
        assert im.mode == "L" and im.size == (160, 96)
        assert np.array_equal(np.asarray(im), text_page(seed=3))


async def test_models_choose_by_name(seed, page_png, tmp_path):
    other = Binarizer("default")
    out = tmp_path / "o"
    assert main(["binarize", str(page_png), "-o", str(out), "-m", "default", "--no-progress"]) == 0
    async with client(create_app([seed, other])) as c:
        models = (await c.get("/v1/models")).json()
        r = await c.post(f"/v1/binarize?model={other.name}", content=page_png.read_bytes())
        d = await c.post("/v1/binarize?model=default", content=page_png.read_bytes())
        health = await c.get("/healthz")
    assert models["default"] == "lstm2-seed"
    assert [m["name"] for m in models["models"]] == ["lstm2-seed", other.name]
    assert models["limits"] == {"max_bytes": Limits().max_bytes, "max_pixels": Limits().max_pixels}
    assert r.headers["x-ocrobin-model"] == other.name
    assert r.content == (out / "page.bin.png").read_bytes()
    assert d.headers["x-ocrobin-model"] == "lstm2-seed"
    assert health.json() == {"status": "ok"}


async def test_page_and_assets_are_served_with_a_strict_policy(seed):
    async with client(create_app([seed])) as c:
        page = await c.get("/")
        js = await c.get("/static/app.js")
        css = await c.get("/static/app.css")
        outside = await c.get("/static/%2e%2e/%2e%2e/pyproject.toml")
        spec = (await c.get("/openapi.json")).json()
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for text in (page.text, js.text, css.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert 'src="static/app.js"' in page.text
    assert outside.status_code == 404 and outside.json() == {"error": "Not Found"}
    post = spec["paths"]["/v1/binarize"]["post"]
    assert {p["name"] for p in post["parameters"]} == {"threshold", "polarity", "format", "model", "resize"}
    assert {"400", "413", "503", "504"} <= set(post["responses"])


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reason"), [
    (b"this is not an image", "not an image"),
    (b"", "empty body"),
])
async def test_400_not_an_image(seed, body, reason):
    async with client(create_app([seed])) as c:
        r = await c.post("/v1/binarize", content=body)
    assert r.status_code == 400
    assert reason in r.json()["error"] and "\n" not in r.text


async def test_400_corrupt_image(seed, page_png):
    data = page_png.read_bytes()
    async with client(create_app([seed])) as c:
        r = await c.post("/v1/binarize", content=data[: len(data) // 2])
    assert r.status_code == 400 and "corrupt or truncated" in r.json()["error"]
    assert list(r.json()) == ["error"]


async def test_400_bad_parameters_and_multipart(seed, page_png):
    data = page_png.read_bytes()
    async with client(create_app([seed])) as c:
        answers = [
            await c.post("/v1/binarize?threshold=1.5", content=data),
            await c.post("/v1/binarize?format=jpeg", content=data),
            await c.post("/v1/binarize?polarity=upside-down", content=data),
            await c.post("/v1/binarize?model=nope", content=data),
            await c.post("/v1/binarize", files={"image": ("a.png", data, "image/png")}),
            await c.post("/v1/binarize", content=data, headers={"Content-Type": "multipart/form-data"}),
        ]
    assert [r.status_code for r in answers] == [400] * 6
    errors = [r.json()["error"] for r in answers]
    assert "threshold" in errors[0] and "format" in errors[1] and "polarity" in errors[2]
    assert "unknown model 'nope'" in errors[3]
    assert "'file' field" in errors[4] and "boundary" in errors[5]


async def test_401_without_the_token(seed, page_png):
    data = page_png.read_bytes()
    async with client(create_app([seed], token=TOKEN)) as c:
        none = await c.post("/v1/binarize", content=data)
        wrong = await c.post("/v1/binarize", content=data, headers={"Authorization": "Bearer nope"})
        basic = await c.get("/v1/models", headers={"Authorization": f"Basic {TOKEN}"})
        models = await c.get("/v1/models")
        right = await c.post("/v1/binarize", content=data, headers={"Authorization": f"Bearer {TOKEN}"})
        open_ = [await c.get(p) for p in ("/healthz", "/", "/static/app.js", "/openapi.json")]
    for r in (none, wrong, basic, models):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["error"]
    assert right.status_code == 200 and right.headers["content-type"] == "image/png"
    assert [r.status_code for r in open_] == [200] * 4


async def test_413_by_content_length_before_reading(seed):
    pulled = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            pulled.append(1)
            yield b"x" * 1000

    async with client(create_app([seed], Limits(max_bytes=5000))) as c:
        r = await c.post("/v1/binarize", content=body(), headers={"Content-Length": "10000"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert pulled == []


async def test_413_chunked_body_counted_while_streaming(seed):
    pulled = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            pulled.append(1)
            yield b"x" * 1000

    async with client(create_app([seed], Limits(max_bytes=5000))) as c:
        r = await c.post("/v1/binarize", content=body())
        form = await c.post("/v1/binarize", files={"file": ("a.png", b"x" * 6000, "image/png")})
    assert r.status_code == 413 and "5,000 bytes" in r.json()["error"]
    assert len(pulled) < 10
    assert form.status_code == 413


async def test_413_page_over_max_pixels(seed, page_png):
    async with client(create_app([seed], Limits(max_pixels=10_000))) as c:
        r = await c.post("/v1/binarize", content=page_png.read_bytes())
    assert r.status_code == 413 and "160×96" in r.json()["error"]


@pytest.mark.parametrize("side", [30_000, 50_000])  # above --max-pixels; above Pillow's own bomb limit
async def test_413_decompression_bomb_from_its_header(seed, side):
    bomb = png_header(side, side)
    assert len(bomb) < 100
    async with client(create_app([seed])) as c:
        r = await c.post("/v1/binarize", content=bomb)
    assert r.status_code == 413 and "too large" in r.json()["error"]


async def test_503_when_workers_and_queue_are_full(seed, page_png):
    gated = Gated(seed)
    app = create_app([gated], Limits(workers=1, queue=1, timeout=30))
    pool = app.state.pool
    data = page_png.read_bytes()
    try:
        async with client(app) as c:
            running = asyncio.create_task(c.post("/v1/binarize", content=data))
            await until(gated.started.is_set, "the first run")
            waiting = asyncio.create_task(c.post("/v1/binarize", content=data))
            await until(lambda: pool.busy == 2, "the second request to wait")
            full = await c.post("/v1/binarize", content=data)
            assert full.status_code == 503
            assert int(full.headers["retry-after"]) >= 1 and "busy" in full.json()["error"]
            gated.gate.set()
            done = await asyncio.gather(running, waiting)
    finally:
        gated.gate.set()
        pool.close()
    assert [r.status_code for r in done] == [200, 200]
    assert done[0].content == done[1].content
    assert pool.busy == 0


async def test_504_cancels_waiting_work_and_abandoned_work_keeps_its_place(seed, page_png):
    gated = Gated(seed)
    app = create_app([gated], Limits(workers=1, queue=1, timeout=0.5))
    pool = app.state.pool
    data = page_png.read_bytes()
    try:
        async with client(app) as c:
            first = asyncio.create_task(c.post("/v1/binarize", content=data))
            await until(gated.started.is_set, "the first run")
            second = await c.post("/v1/binarize", content=data)  # waits for the thread, then times out
            assert (await first).status_code == 504
            assert second.status_code == 504 and "took longer than 0.5 s" in second.json()["error"]
            # the first run still holds the thread: its place is not free, so nothing piles up behind it
            assert pool.busy == 1
            gated.gate.set()
            await until(lambda: pool.busy == 0, "the abandoned run to end")
            again = await c.post("/v1/binarize", content=data)
    finally:
        gated.gate.set()
        pool.close()
    assert gated.calls == 2  # the first run and the last; the second request's work never started
    assert again.status_code == 200


async def test_abandoned_work_blocks_new_requests_with_503(seed, page_png):
    gated = Gated(seed)
    app = create_app([gated], Limits(workers=1, queue=0, timeout=0.3))
    data = page_png.read_bytes()
    try:
        async with client(app) as c:
            slow = await c.post("/v1/binarize", content=data)
            after = await c.post("/v1/binarize", content=data)
    finally:
        gated.gate.set()
        app.state.pool.close()
    assert slow.status_code == 504
    assert after.status_code == 503 and "retry-after" in after.headers


async def test_one_access_line_per_request(seed, page_png, caplog):
    caplog.set_level(logging.INFO, logger="ocrobin.serve.access")
    async with client(create_app([seed])) as c:
        ok = await c.post("/v1/binarize", content=page_png.read_bytes())
        await c.post("/v1/binarize", content=b"junk")
        await c.get("/healthz")
    lines = [r.getMessage() for r in caplog.records if r.name == "ocrobin.serve.access"]
    assert len(lines) == 3
    assert lines[0].startswith("127.0.0.1 POST /v1/binarize 200 ")
    assert f" {len(ok.content)} B " in lines[0] and lines[0].endswith(" ms")
    assert " POST /v1/binarize 400 " in lines[1] and " GET /healthz 200 " in lines[2]


def test_cli_rejects_bad_limits_before_loading_models(capsys):
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--max-pixels", "5e9"]) == 2
    assert "--max-pixels" in capsys.readouterr().err
