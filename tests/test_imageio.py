import io

import numpy as np
import pytest
from PIL import Image

from ocrobin.exceptions import InputError
from ocrobin.imageio import decode_gray, encode_png, iter_pages, read_gray, to_gray, write_binary, write_prob


def save(tmp_path, img, name, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


@pytest.fixture
def rgb():
    a = np.zeros((20, 30, 3), np.uint8)
    a[..., 0] = 255
    a[5:10, 5:10] = 90
    return a


def test_rgb_is_mean_of_channels(rgb):
    g = to_gray(rgb)
    assert g.dtype == np.float32 and g.shape == (20, 30)
    assert g[0, 0] == pytest.approx(1 / 3, abs=1e-6)
    assert g[6, 6] == pytest.approx(90 / 255, abs=1e-6)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_every_mode_reads_as_grey_in_unit_range(tmp_path, mode):
    base = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (10, 1)))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base).astype(np.uint16) * 257)
    elif mode == "F":
        img = base.convert("F")
    else:
        img = base.convert(mode)
    fmt = "tiff" if mode in ("F", "CMYK", "I;16", "I") else "png"
    p = save(tmp_path, img, f"x.{fmt}")
    g = read_gray(p)
    assert g.shape == (10, 40) and g.dtype == np.float32
    assert 0.0 <= g.min() and g.max() <= 1.0
    assert g[0, 0] < 0.1 and g[0, -1] > 0.9


def test_sixteen_bit_keeps_full_range(tmp_path):
    a = np.array([[0, 32768, 65535]], np.uint16)
    p = save(tmp_path, Image.fromarray(a), "x.png")
    assert read_gray(p) == pytest.approx(np.array([[0, 0.5, 1.0]]), abs=1e-4)


def test_alpha_composited_over_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 3] = 0
    a[0, 0, 3] = 255
    g = read_gray(save(tmp_path, Image.fromarray(a, "RGBA"), "x.png"))
    assert g[0, 0] == 0.0 and g[1, 1] == 1.0


def test_exif_orientation_is_applied(tmp_path):
    a = np.full((10, 20), 255, np.uint8)
    a[0, 0] = 0
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    p = save(tmp_path, img, "x.jpg", exif=exif, quality=100)
    g = read_gray(p)
    assert g.shape == (20, 10)
    assert g[0, -1] < 0.5


def test_dpi_and_multipage(tmp_path):
    frames = [Image.fromarray(np.full((8, 9), v, np.uint8)) for v in (0, 128, 255)]
    p = tmp_path / "m.tif"
    frames[0].save(p, save_all=True, append_images=frames[1:], dpi=(300, 300))
    pages = list(iter_pages(p))
    assert [pg.index for pg in pages] == [0, 1, 2] and pages[0].count == 3
    assert pages[0].dpi == pytest.approx((300, 300))
    assert pages[2].gray.mean() == 1.0


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
])
def test_bad_files_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(InputError, match=f"bad.png: {match}"):
        read_gray(p)


def test_truncated_png(tmp_path, page):
    p = tmp_path / "t.png"
    Image.fromarray(page).save(p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(InputError, match="t.png"):
        read_gray(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.png"):
        read_gray(tmp_path / "nope.png")


def test_huge_page_is_refused(tmp_path, monkeypatch):
    import ocrobin.imageio as io_

    monkeypatch.setattr(io_, "MAX_PIXELS", 100)
    p = save(tmp_path, Image.new("L", (20, 20)), "big.png")
    with pytest.raises(InputError, match="big.png: page 1 too large"):
        read_gray(p)


def test_decode_gray_errors_name_the_sample():
    with pytest.raises(InputError, match="shard.tar:k1"):
        decode_gray(b"junk", "shard.tar:k1")
    assert decode_gray(encode_png(np.zeros((3, 3), np.uint8)), "x").max() == 0.0


def test_write_binary_png_and_g4_tiff_keep_dpi(tmp_path):
    ink = np.zeros((12, 16), bool)
    ink[3:6, 4:9] = True
    for fmt in ("png", "tif"):
        p = tmp_path / f"o.{fmt}"
        write_binary(p, ink, dpi=(200, 200), fmt=fmt)
        with Image.open(p) as im:
            assert im.mode == "1"
            assert im.info["dpi"] == pytest.approx((200, 200), abs=0.01)
            if fmt == "tif":
                assert im.info["compression"] == "group4"
            assert np.array_equal(np.asarray(im) == 0, ink)
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]


def test_write_prob_is_floor_255p(tmp_path):
    p = tmp_path / "p.png"
    write_prob(p, np.array([[0.0, 0.5, 0.999, 1.0]], np.float32))
    assert np.asarray(Image.open(p)).tolist() == [[0, 127, 254, 255]]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyError):
        write_binary(tmp_path / "x.png", np.zeros((2, 2), bool), fmt="nosuchformat")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_target_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A save that dies after writing part of the file: the old output stays byte for byte, nothing else."""
    target = tmp_path / "page.bin.png"
    old = encode_png(np.zeros((12, 16), bool))
    target.write_bytes(old)

    def dies_half_way(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n half a page")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        write_binary(target, np.ones((12, 16), bool))
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["page.bin.png"]


def three_page_tiff(path, sizes=((40, 50), (30, 60), (44, 36)), dpis=((300, 300), (200, 200), (150, 120))):
    """A multi-page TIFF whose pages differ in size, pixels and DPI; returns each page's uint8 pixels."""
    rng = np.random.default_rng(5)
    pages = [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]
    frames = [Image.fromarray(a) for a in pages]
    for frame, dpi in zip(frames[1:], dpis[1:], strict=True):
        frame.encoderinfo = {"dpi": dpi}  # appended frames carry their own save options
    frames[0].save(path, save_all=True, append_images=frames[1:], dpi=dpis[0])
    return pages


def test_multipage_tiff_pages_keep_their_own_pixels_and_dpi(tmp_path):
    p = tmp_path / "m.tif"
    pixels = three_page_tiff(p)
    pages = list(iter_pages(p))
    assert [(pg.index, pg.count) for pg in pages] == [(0, 3), (1, 3), (2, 3)]
    for pg, want in zip(pages, pixels, strict=True):
        np.testing.assert_array_equal(pg.gray, want.astype(np.float32) / 255.0)
    assert [pg.dpi for pg in pages] == [pytest.approx(d) for d in ((300, 300), (200, 200), (150, 120))]


def test_tiff_page_without_resolution_has_no_dpi(tmp_path):
    """Pillow reports (1, 1) for a TIFF page without resolution tags; that is no pixel density."""
    frames = [Image.fromarray(np.full((8, 9), v, np.uint8)) for v in (0, 128, 255)]
    frames[1].encoderinfo = {"dpi": (200, 200)}
    p = tmp_path / "m.tif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    Image.new("L", (5, 5)).save(tmp_path / "s.tif")
    assert [pg.dpi for pg in iter_pages(p)] == [None, pytest.approx((200, 200)), None]
    assert next(iter_pages(tmp_path / "s.tif")).dpi is None


def test_two_level_pages_are_run_length_coded_and_read_back_unchanged():
    """1-bit pages and the shards' 8-bit 0/255 ``bin.png`` use zlib's run-length strategy: same pixels, same
    mode, smaller than the plain 8-bit PNG of the same page."""
    import zlib

    from ocrobin.imageio import PNG_RLE, encode_image

    assert PNG_RLE == zlib.Z_RLE
    rng = np.random.default_rng(3)
    ink = np.ones((300, 400), bool)
    for _ in range(150):  # strokes
        y, x = rng.integers(0, 290), rng.integers(0, 360)
        ink[y:y + rng.integers(2, 10), x:x + rng.integers(5, 40)] = False
    grey = Image.fromarray((ink * 255).astype(np.uint8), "L")
    rle = encode_image(grey, "png", two_level=True)
    plain = encode_image(grey, "png")
    assert len(rle) < len(plain)
    back = Image.open(io.BytesIO(rle))
    assert back.mode == "L"
    assert np.array_equal(np.asarray(back), np.asarray(grey))
    one = Image.open(io.BytesIO(encode_image(grey.convert("1"), "png")))
    assert one.mode == "1" and np.array_equal(np.asarray(one.convert("L")), np.asarray(grey))
