"""The OCR-D processor on a small workspace built with the framework's own API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("ocrd", reason="OCR-D processor needs the ocrd extra: pip install 'ocrobin[ocrd]'")

from ocrd import Resolver  # noqa: E402
from ocrd.processor import run_processor  # noqa: E402
from ocrd_modelfactory import page_from_file  # noqa: E402
from ocrd_models.ocrd_page import AlternativeImageType, parse, to_xml  # noqa: E402
from ocrd_utils import MIMETYPE_PAGE, initLogging  # noqa: E402

from ocrobin.exceptions import UsageError  # noqa: E402
from ocrobin.modelfile import DEFAULT_MODEL  # noqa: E402
from ocrobin.ocrd import EXECUTABLE, OcrobinBinarize, _features  # noqa: E402

PAGE_ID = "PHYS_0001"

# OCR-D's page workers expect the root logger handler that its CLI sets up; do the same for API calls.
initLogging()


def _page() -> tuple[np.ndarray, np.ndarray]:
    """A grey page with dark text on uneven paper, and the mask of where the text was drawn."""
    h, w = 160, 360
    ink = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(ink)
    font = ImageFont.load_default(size=28)
    draw.text((12, 20), "Binarize this", fill=255, font=font)
    draw.text((12, 90), "page, please!", fill=255, font=font)
    text = np.asarray(ink) > 128
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 200 + 25 * np.sin(xx / 50.0) * np.cos(yy / 40.0)
    gray = np.where(text, 35, paper).astype(np.uint8)
    return gray, text


def _png(a: np.ndarray, dpi: float | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return buf.getvalue()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """OCR-D-IMG (a page image), OCR-D-GRAY (a derived grey image) and OCR-D-SEG (PAGE-XML referencing both).

    OCR-D-SEG's page carries an AlternativeImage with the feature ``grayscale_normalized`` so the test
    can check that the processor keeps the input image's features.
    """
    gray, text = _page()
    ws = Resolver().workspace_from_nothing(directory=str(tmp_path / "ws"))
    monkeypatch.chdir(ws.directory)  # METS paths are relative to the workspace
    img = ws.add_file("OCR-D-IMG", file_id="OCR-D-IMG_0001", page_id=PAGE_ID, mimetype="image/png",
                      local_filename="OCR-D-IMG/OCR-D-IMG_0001.png", content=_png(gray))
    # the "normalised" image differs from the original so the test can see which one was binarized
    normalised = np.clip(gray.astype(int) + 20, 0, 255).astype(np.uint8)
    ws.add_file("OCR-D-GRAY", file_id="OCR-D-GRAY_0001", page_id=PAGE_ID, mimetype="image/png",
                local_filename="OCR-D-GRAY/OCR-D-GRAY_0001.png", content=_png(normalised))
    pcgts = page_from_file(img)
    pcgts.set_pcGtsId("OCR-D-SEG_0001")
    pcgts.get_Page().add_AlternativeImage(
        AlternativeImageType(filename="OCR-D-GRAY/OCR-D-GRAY_0001.png", comments="grayscale_normalized"))
    ws.add_file("OCR-D-SEG", file_id="OCR-D-SEG_0001", page_id=PAGE_ID, mimetype=MIMETYPE_PAGE,
                local_filename="OCR-D-SEG/OCR-D-SEG_0001.xml", content=to_xml(pcgts))
    ws.save_mets()
    return ws, text


def _result(ws, grp: str) -> tuple[object, Image.Image]:
    """The output PAGE-XML of the page in ``grp`` and the image its last AlternativeImage references."""
    ws.reload_mets()
    pages = list(ws.find_files(file_grp=grp, page_id=PAGE_ID, mimetype=MIMETYPE_PAGE))
    assert len(pages) == 1
    pcgts = parse(str(Path(ws.directory, pages[0].local_filename)), silence=True)
    alts = pcgts.get_Page().get_AlternativeImage()
    assert alts, "no AlternativeImage in the output PAGE-XML"
    images = list(ws.find_files(file_grp=grp, page_id=PAGE_ID, mimetype="image/png"))
    assert [f.local_filename for f in images] == [alts[-1].get_filename()]
    return alts, Image.open(Path(ws.directory, alts[-1].get_filename()))


def _check_binary(img: Image.Image, text: np.ndarray) -> None:
    assert img.mode == "1"
    assert img.size == (text.shape[1], text.shape[0])
    black = ~np.asarray(img, dtype=bool)
    assert black[text].mean() > 0.9, "text pixels are not black"
    assert black[~text].mean() < 0.05, "paper pixels are not white"


def test_features_keep_order_and_add_binarized() -> None:
    assert _features("") == "binarized"
    assert _features("cropped,deskewed") == "cropped,deskewed,binarized"
    assert _features("binarized,cropped") == "binarized,cropped"


def test_processor_keeps_features_and_writes_one_bit_page(workspace) -> None:
    ws, text = workspace
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-SEG", output_file_grp="OCR-D-BIN",
                  parameter={"threshold": 0.5, "dpi": 300})
    alts, img = _result(ws, "OCR-D-BIN")
    assert alts[0].get_comments() == "grayscale_normalized"
    assert alts[-1].get_comments() == "grayscale_normalized,binarized"
    _check_binary(img, text)
    assert img.info.get("dpi") and round(img.info["dpi"][0]) == 300
    # a second binarizer run must not pick the binarized image as its input
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-BIN", output_file_grp="OCR-D-BIN2",
                  parameter={})
    alts2, img2 = _result(ws, "OCR-D-BIN2")
    assert alts2[-1].get_comments() == "grayscale_normalized,binarized"
    assert np.array_equal(np.asarray(img2), np.asarray(img))


def test_threshold_parameter_changes_the_result(workspace) -> None:
    ws, text = workspace
    # the page's crisp text leaves the model sure of nearly every pixel: only cuts near 0 and 1 differ
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-LO",
                  parameter={"threshold": 0.001})
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-HI",
                  parameter={"threshold": 0.999})
    _, lo = _result(ws, "OCR-D-LO")
    _, hi = _result(ws, "OCR-D-HI")
    black_lo = (~np.asarray(lo, dtype=bool)).sum()
    black_hi = (~np.asarray(hi, dtype=bool)).sum()
    assert black_lo > 1.2 * black_hi


def test_parameters_reach_the_binarizer() -> None:
    auto = OcrobinBinarize(None, parameter={})
    assert auto.binarizer.tile is None and auto.binarizer.name == DEFAULT_MODEL
    assert auto.binarizer.polarity == "auto" and auto.opts.polarity == "auto"
    fixed = OcrobinBinarize(None, parameter={"tile_size": 512, "model": "lstm2-seed", "polarity": "inverted"})
    assert fixed.binarizer.tile == 512
    assert fixed.binarizer.polarity == "inverted" and fixed.opts.polarity == "inverted"
    assert auto.binarizer.resize == 1.0
    assert OcrobinBinarize(None, parameter={"resize": 0.5}).binarizer.resize == 0.5
    with pytest.raises(ValueError, match="resize"):
        OcrobinBinarize(None, parameter={"resize": 0})
    with pytest.raises(ValueError, match="threshold"):
        OcrobinBinarize(None, parameter={"threshold": 2})
    with pytest.raises(ValueError, match="polarity"):
        OcrobinBinarize(None, parameter={"polarity": "upside-down"})


def test_unknown_model_is_reported(workspace) -> None:
    from ocrobin.exceptions import ModelError

    ws, _ = workspace
    with pytest.raises(ModelError, match="no-such-model"):
        run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-X",
                      parameter={"model": "no-such-model"})


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ocrobin.ocrd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_dump_json_and_run(workspace) -> None:
    ws, text = workspace
    r = _cli("--dump-json", cwd=Path(ws.directory))
    assert r.returncode == 0, r.stderr
    tool = json.loads(r.stdout)
    assert tool["executable"] == EXECUTABLE
    assert {"model", "threshold", "tile_size", "dpi", "polarity"} <= set(tool["parameters"])
    assert tool["parameters"]["polarity"]["default"] == "auto"
    r = _cli("-m", "mets.xml", "-I", "OCR-D-IMG", "-O", "OCR-D-BIN", "-P", "threshold", "0.5",
             cwd=Path(ws.directory))
    assert r.returncode == 0, r.stderr
    alts, img = _result(ws, "OCR-D-BIN")
    assert alts[-1].get_comments() == "binarized"
    _check_binary(img, text)


def _cli_binarized(src: Path, out: Path, *extra: str) -> np.ndarray:
    """What ``ocrobin binarize`` (default model, threshold 0.5, polarity auto) makes of ``src``: True = ink."""
    from ocrobin.cli import main

    assert main(["binarize", str(src), "-o", str(out), "--no-progress", "--workers", "1", *extra]) == 0
    with Image.open(out / f"{src.stem}.bin.png") as im:
        return ~np.asarray(im, dtype=bool)


def _output_of(ws, grp: str, page_id: str) -> Image.Image:
    ws.reload_mets()
    pages = list(ws.find_files(file_grp=grp, page_id=page_id, mimetype=MIMETYPE_PAGE))
    assert len(pages) == 1
    alts = parse(str(Path(ws.directory, pages[0].local_filename)), silence=True).get_Page().get_AlternativeImage()
    return Image.open(Path(ws.directory, alts[-1].get_filename()))


def test_each_page_binarizes_its_own_image_and_keeps_its_dpi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pages with different images and pixel densities: each output is ``ocrobin binarize`` of its own
    image, with that image's DPI (and no "dpi" parameter to fall back on)."""
    gray, _ = _page()
    pages = {"PHYS_0001": (gray, (300.0, 300.0)),
             "PHYS_0002": (np.ascontiguousarray(gray[::-1, ::-1][20:, 40:]), (200.0, 150.0))}
    ws = Resolver().workspace_from_nothing(directory=str(tmp_path / "ws"))
    monkeypatch.chdir(ws.directory)
    for n, (page_id, (a, dpi)) in enumerate(pages.items(), start=1):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", dpi=dpi)
        ws.add_file("OCR-D-IMG", file_id=f"OCR-D-IMG_{n:04d}", page_id=page_id, mimetype="image/png",
                    local_filename=f"OCR-D-IMG/OCR-D-IMG_{n:04d}.png", content=buf.getvalue())
    ws.save_mets()
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-BIN",
                  parameter={})
    for n, (page_id, (a, dpi)) in enumerate(pages.items(), start=1):
        img = _output_of(ws, "OCR-D-BIN", page_id)
        assert img.mode == "1" and img.size == (a.shape[1], a.shape[0])
        assert img.info.get("dpi") == pytest.approx(dpi, abs=0.05), page_id  # PNG stores pixels per metre
        want = _cli_binarized(Path(ws.directory, f"OCR-D-IMG/OCR-D-IMG_{n:04d}.png"), tmp_path / f"cli{n}")
        assert np.array_equal(~np.asarray(img, dtype=bool), want), page_id


def test_the_alternative_image_is_what_gets_binarized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page whose AlternativeImage differs from its original (a stain cleaned away, one line erased): the
    output is ``ocrobin binarize`` of the AlternativeImage."""
    gray, _ = _page()
    original = gray.copy()
    original[130:150, 250:340] = 60  # a dark stain
    ws = Resolver().workspace_from_nothing(directory=str(tmp_path / "ws"))
    monkeypatch.chdir(ws.directory)
    img = ws.add_file("OCR-D-IMG", file_id="OCR-D-IMG_0001", page_id=PAGE_ID, mimetype="image/png",
                      local_filename="OCR-D-IMG/OCR-D-IMG_0001.png", content=_png(original, 300))
    cleaned = gray.copy()
    cleaned[80:130] = 210  # the second line erased
    ws.add_file("OCR-D-CLEAN", file_id="OCR-D-CLEAN_0001", page_id=PAGE_ID, mimetype="image/png",
                local_filename="OCR-D-CLEAN/OCR-D-CLEAN_0001.png", content=_png(cleaned, 300))
    pcgts = page_from_file(img)
    pcgts.set_pcGtsId("OCR-D-SEG_0001")
    pcgts.get_Page().add_AlternativeImage(
        AlternativeImageType(filename="OCR-D-CLEAN/OCR-D-CLEAN_0001.png", comments="despeckled"))
    ws.add_file("OCR-D-SEG", file_id="OCR-D-SEG_0001", page_id=PAGE_ID, mimetype=MIMETYPE_PAGE,
                local_filename="OCR-D-SEG/OCR-D-SEG_0001.xml", content=to_xml(pcgts))
    ws.save_mets()
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-SEG", output_file_grp="OCR-D-BIN",
                  parameter={})
    got = ~np.asarray(_output_of(ws, "OCR-D-BIN", PAGE_ID), dtype=bool)
    want = _cli_binarized(Path(ws.directory, "OCR-D-CLEAN/OCR-D-CLEAN_0001.png"), tmp_path / "clean")
    other = _cli_binarized(Path(ws.directory, "OCR-D-IMG/OCR-D-IMG_0001.png"), tmp_path / "orig")
    assert (want != other).mean() > 0.02  # the two inputs binarize clearly differently
    assert np.array_equal(got, want)


def _one_page_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gray: np.ndarray, dpi: float):
    ws = Resolver().workspace_from_nothing(directory=str(tmp_path / "ws"))
    monkeypatch.chdir(ws.directory)
    ws.add_file("OCR-D-IMG", file_id="OCR-D-IMG_0001", page_id=PAGE_ID, mimetype="image/png",
                local_filename="OCR-D-IMG/OCR-D-IMG_0001.png", content=_png(gray, dpi))
    ws.save_mets()
    return ws


def test_polarity_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A light-on-dark page: "auto" (the default) finds it and gives black text on white, the same pixels as
    ``ocrobin binarize``, with the image's DPI; "normal" takes it as it is. (lstm2-seed, which was never
    trained on light-on-dark text, so that "normal" shows.)"""
    gray, text = _page()
    ws = _one_page_workspace(tmp_path, monkeypatch, 255 - gray, 300)
    seed = {"model": "lstm2-seed"}
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-BIN",
                  parameter=seed)
    run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-NORMAL",
                  parameter=dict(seed, polarity="normal"))
    auto = _output_of(ws, "OCR-D-BIN", PAGE_ID)
    assert auto.mode == "1" and auto.info.get("dpi") == pytest.approx((300, 300), abs=0.05)
    black = ~np.asarray(auto, dtype=bool)
    assert black[text].mean() > 0.9 and black[~text].mean() < 0.05, "text black, ground white"
    src = Path(ws.directory, "OCR-D-IMG/OCR-D-IMG_0001.png")
    assert np.array_equal(black, _cli_binarized(src, tmp_path / "cli", "-m", "lstm2-seed"))
    normal = ~np.asarray(_output_of(ws, "OCR-D-NORMAL", PAGE_ID), dtype=bool)
    assert normal[text].mean() < 0.5, "polarity normal: the light text is not taken for ink"
    assert np.array_equal(normal, _cli_binarized(src, tmp_path / "cli-normal", "-m", "lstm2-seed",
                                                 "--polarity", "normal"))


def test_output_group_equal_to_input_group_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-O equal to -I would mix the binarized images with (or write them over) the inputs: refused before
    anything is written, from Python and from the command line (even with --overwrite)."""
    gray, _ = _page()
    ws = _one_page_workspace(tmp_path, monkeypatch, gray, 300)
    before = sorted(p.name for p in Path(ws.directory, "OCR-D-IMG").iterdir())
    mets = Path(ws.directory, "mets.xml").read_bytes()
    with pytest.raises(UsageError, match="output file group OCR-D-IMG is also an input file group"):
        run_processor(OcrobinBinarize, workspace=ws, input_file_grp="OCR-D-IMG", output_file_grp="OCR-D-IMG",
                      parameter={})
    r = _cli("-m", "mets.xml", "-I", "OCR-D-IMG", "-O", "OCR-D-IMG", "--overwrite", cwd=Path(ws.directory))
    assert r.returncode == 2, r.stderr
    assert (f"Error: {EXECUTABLE}: output file group OCR-D-IMG is also an input file group: it would mix the "
            "binarized images with (or write them over) its inputs; choose another -O") in r.stderr.splitlines()
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in Path(ws.directory, "OCR-D-IMG").iterdir()) == before
    assert Path(ws.directory, "mets.xml").read_bytes() == mets
