"""Scoring binarized pages against ground truth: folder evaluation (``ocrobin eval``) and benchmarks of
our models and classic thresholding methods (``ocrobin bench``).

Ground truth follows the DIBCO convention (text = black, value 0) unless told otherwise; predictions are
read as text wherever their grey value is below 128. Pseudo-F-measure weights come from the DIBCO
``<stem>_RWeights.dat`` / ``<stem>_PWeights.dat`` files when present, else they are generated from the
ground truth with :func:`ocrobin.metrics.pseudo_weights` (which reproduces the DIBCO tool's files), unless
generation is switched off, in which case pFM is None ("n/a").
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets, metrics
from .exceptions import DataError, InputError, OcrobinError, UsageError
from .imageio import IMAGE_SUFFIXES, atomic_path, read_gray, read_ground_truth, write_binary
from .paths import check_no_clash

#: Suffix of the binary pages ``ocrobin binarize`` writes; preferred over other files of the same stem.
PRED_SUFFIX = ".bin.png"

#: Classic methods run through doxapy: our name -> doxapy algorithm name.
CLASSIC = {
    "otsu": "OTSU", "sauvola": "SAUVOLA", "wolf": "WOLF", "isauvola": "ISAUVOLA", "su": "SU", "nick": "NICK",
    "bataineh": "BATAINEH", "niblack": "NIBLACK", "bernsen": "BERNSEN", "gatos": "GATOS", "wan": "WAN",
    "trsingh": "TRSINGH",
}
#: Parameters that differ from doxapy's defaults (Sauvola as usually reported on DIBCO: window 75, k 0.2).
CLASSIC_PARAMS: dict[str, dict[str, float]] = {"sauvola": {"window": 75, "k": 0.2}}

#: Methods benchmarked when none are named.
DEFAULT_METHODS = ("default", "lstm2-seed", "otsu", "sauvola", "wolf", "isauvola", "su", "nick", "bataineh")

#: Threshold on our models' ink probability.
MODEL_THRESHOLD = 0.5

#: Columns of the Markdown table (metric key, header).
TABLE_COLUMNS = (("fm", "FM"), ("pfm", "pFM"), ("psnr", "PSNR"), ("drd", "DRD"))


# --------------------------------------------------------------------------------------------------
# Pages, ground truth and weights
# --------------------------------------------------------------------------------------------------


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _files_by_stem(directory: Path, prefer_bin: bool) -> tuple[dict[str, Path], list[str]]:
    """Map stem -> image file; returns also notes about stems that several files share."""
    found: dict[str, list[Path]] = {}
    for p in sorted(directory.iterdir()):
        if not _is_image(p):
            continue
        if prefer_bin and p.name.lower().endswith(PRED_SUFFIX):
            stem = p.name[: -len(PRED_SUFFIX)]
        else:
            stem = p.stem
        found.setdefault(stem, []).append(p)
    rank = {s: i for i, s in enumerate(IMAGE_SUFFIXES)}
    out: dict[str, Path] = {}
    notes: list[str] = []
    for stem, files in found.items():
        files.sort(key=lambda f: (not (prefer_bin and f.name.lower().endswith(PRED_SUFFIX)),
                                  rank.get(f.suffix.lower(), 99), f.name))
        out[stem] = files[0]
        if len(files) > 1:
            notes.append(f"{directory}: several files for '{stem}', using {files[0].name}")
    return out, notes


def weight_files(weights_dir: str | os.PathLike[str] | None, stem: str) -> tuple[Path, Path] | None:
    """The (RWeights, PWeights) pair of a page in ``weights_dir``, None when neither exists.

    Raises:
        InputError: only one of the two files exists.
    """
    if weights_dir is None:
        return None
    d = Path(weights_dir)
    r, p = d / f"{stem}_RWeights.dat", d / f"{stem}_PWeights.dat"
    if r.is_file() and p.is_file():
        return r, p
    if r.is_file() or p.is_file():
        have, lack = (r, p) if r.is_file() else (p, r)
        raise InputError(f"{have}: its partner {lack.name} is missing")
    return None


def page_weights(gt: np.ndarray, stem: str, weights_dir: str | os.PathLike[str] | None,
                 generate: bool) -> metrics.PseudoWeights | None:
    """Pseudo-metric weights of a ground-truth page: from files, else generated, else None.

    Raises:
        InputError: incomplete or malformed weight files.
    """
    files = weight_files(weights_dir, stem)
    if files is not None:
        return metrics.load_weights(files[0], files[1], gt.shape)
    if generate:
        return metrics.pseudo_weights(gt)
    return None


def read_prediction(path: str | os.PathLike[str]) -> np.ndarray:
    """A binarized page as an ink mask: text wherever the grey value is below 128.

    Raises:
        InputError: see :func:`ocrobin.imageio.read_gray`.
    """
    return read_gray(path) < 0.5


def _size_check(gt: np.ndarray, other: np.ndarray, gt_path: Path, other_path: Path) -> None:
    if gt.shape != other.shape:
        raise InputError(f"{other_path}: size {other.shape[1]}×{other.shape[0]} differs from ground truth "
                         f"{gt_path} ({gt.shape[1]}×{gt.shape[0]})")


def scores_row(stem: str, scores: metrics.Scores, weights: metrics.PseudoWeights | None) -> dict[str, Any]:
    """One page's result row: stem, all metrics, and where the pFM weights came from."""
    row: dict[str, Any] = {"stem": stem}
    row.update(scores.as_dict())
    row["pfm_weights"] = weights.source if weights is not None else None
    return row


# --------------------------------------------------------------------------------------------------
# Folder evaluation (ocrobin eval)
# --------------------------------------------------------------------------------------------------


@dataclass
class EvalReport:
    """Result of :func:`evaluate_dirs`.

    Attributes:
        pages: one row per scored page (see :func:`scores_row`).
        failed: ``{"stem", "file", "error"}`` for each page that could not be scored.
        mean: mean of each metric over the scored pages (pFM over the pages that have it).
        notes: informational lines (ignored predictions, duplicate stems).
    """

    pages: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    mean: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def evaluate_dirs(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str],
                  weights_dir: str | os.PathLike[str] | None = None, gt_text_white: bool = False,
                  generate_weights: bool = True,
                  on_page: Callable[[dict[str, Any] | None, dict[str, str] | None], None] | None = None,
                  ) -> EvalReport:
    """Score every ground-truth page against the prediction of the same stem.

    Args:
        pred_dir: folder of binarized pages (``<stem>.bin.png`` or ``<stem>.<image ext>``).
        gt_dir: folder of ground-truth pages ``<stem>.<image ext>``.
        weights_dir: folder of ``<stem>_RWeights.dat`` / ``<stem>_PWeights.dat`` (optional).
        gt_text_white: ground truth has white text on black (default: DIBCO, black text).
        generate_weights: generate pFM weights for pages without weight files.
        on_page: called after each page with its row or its failure (for progress output).

    Returns:
        An :class:`EvalReport`; missing predictions, unreadable files and size mismatches are failures
        of their page, not exceptions.

    Raises:
        DataError: a folder is missing or holds no ground truth.
    """
    pdir, gdir = Path(pred_dir), Path(gt_dir)
    for d, what in ((pdir, "prediction"), (gdir, "ground-truth")):
        if not d.is_dir():
            raise DataError(f"{d}: {what} folder not found")
    if weights_dir is not None and not Path(weights_dir).is_dir():
        raise DataError(f"{weights_dir}: weights folder not found")
    gts, notes = _files_by_stem(gdir, prefer_bin=False)
    preds, pnotes = _files_by_stem(pdir, prefer_bin=True)
    if not gts:
        raise DataError(f"{gdir}: no ground-truth images")
    report = EvalReport(notes=notes + pnotes)
    orphans = sorted(set(preds) - set(gts))
    if orphans:
        report.notes.append(f"{len(orphans)} prediction file(s) without ground truth ignored "
                            f"(e.g. {preds[orphans[0]].name})")
    for stem in sorted(gts):
        gt_path = gts[stem]
        pred_path = preds.get(stem)
        row = None
        fail = None
        if pred_path is None:
            fail = {"stem": stem, "file": str(gt_path), "error": f"{gt_path}: no prediction for '{stem}' in {pdir}"}
        else:
            try:
                gt = read_ground_truth(gt_path, text_white=gt_text_white)
                pred = read_prediction(pred_path)
                _size_check(gt, pred, gt_path, pred_path)
                weights = page_weights(gt, stem, weights_dir, generate_weights)
                row = scores_row(stem, metrics.evaluate(gt, pred, weights), weights)
            except OcrobinError as e:
                fail = {"stem": stem, "file": str(pred_path), "error": str(e)}
        if row is not None:
            report.pages.append(row)
        if fail is not None:
            report.failed.append(fail)
        if on_page is not None:
            on_page(row, fail)
    report.mean = metrics.mean_scores(report.pages)
    return report


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


#: Columns of the text table of ``ocrobin eval``: (key, header, decimals).
EVAL_COLUMNS = (("fm", "FM", 2), ("pfm", "pFM", 2), ("precision", "P", 2), ("recall", "R", 2),
                ("psnr", "PSNR", 2), ("drd", "DRD", 3), ("nrm", "NRM", 4), ("mcc", "MCC", 4))


def format_table(rows: Sequence[dict[str, Any]], mean: dict[str, float | None] | None = None) -> str:
    """Plain-text table of per-page scores with an optional mean row."""
    stems = [str(r["stem"]) for r in rows] + (["mean"] if mean is not None else [])
    sw = max([4, *map(len, stems)])
    head = f"{'page':<{sw}}" + "".join(f" {h:>8}" for _, h, _ in EVAL_COLUMNS)
    lines = [head]
    for r in rows:
        lines.append(f"{r['stem']:<{sw}}" + "".join(f" {_fmt(r.get(k), d):>8}" for k, _, d in EVAL_COLUMNS))
    if mean is not None:
        lines.append("-" * len(head))
        lines.append(f"{'mean':<{sw}}" + "".join(f" {_fmt(mean.get(k), d):>8}" for k, _, d in EVAL_COLUMNS))
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (strict: no NaN or infinity)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_csv(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write per-page rows as CSV atomically (empty cell where a value is None)."""
    cols = ["stem", *metrics.KEYS, "pfm_weights"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})


# --------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------


@dataclass
class Method:
    """A binarization method under test: ``run(gray)`` maps float grey in [0, 1] to an ink mask."""

    name: str
    kind: str  # "classic" or "model"
    run: Callable[[np.ndarray], np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """float grey in [0, 1] -> uint8 0..255 (rounded), the input classic methods get."""
    return np.ascontiguousarray(np.clip(np.rint(np.asarray(gray, np.float32) * 255.0), 0, 255).astype(np.uint8))


def _parse_params(text: str, spec: str) -> dict[str, float]:
    params: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise UsageError(f"method '{spec}': parameters are KEY=VALUE separated by commas")
        try:
            num = float(value)
        except ValueError as e:
            raise UsageError(f"method '{spec}': '{value}' is not a number") from e
        params[key.strip()] = int(num) if num.is_integer() and key.strip() == "window" else num
    return params


def classic_method(spec: str) -> Method:
    """A doxapy method from ``NAME`` or ``NAME:key=value,...`` (e.g. ``sauvola:window=51,k=0.3``).

    Raises:
        UsageError: unknown name or malformed parameters.
    """
    import doxapy

    name, _, rest = spec.partition(":")
    key = name.lower()
    if key not in CLASSIC:
        raise UsageError(f"unknown classic method '{name}' (known: {', '.join(CLASSIC)})")
    params: dict[str, Any] = dict(CLASSIC_PARAMS.get(key, {}))
    params.update(_parse_params(rest, spec))
    algorithm = getattr(doxapy.Binarization.Algorithms, CLASSIC[key])

    def run(gray: np.ndarray) -> np.ndarray:
        img = to_uint8(gray)
        out = np.empty_like(img)
        b = doxapy.Binarization(algorithm)
        b.initialize(img)
        b.to_binary(out, params)
        return out == 0

    return Method(spec, "classic", run, params)


def model_method(spec: str, threads: int | None = None, device: str = "cpu") -> Method:
    """One of our models (a name such as ``default`` / ``lstm2-seed`` or a model file), thresholded at
    :data:`MODEL_THRESHOLD`; ``MODEL:tta`` averages it over the page's flips (``binarize --tta``).

    Raises:
        ModelError: the model cannot be loaded.
    """
    from .infer import Binarizer, threshold

    name, tta = (spec[:-4], True) if spec.endswith(":tta") else (spec, False)
    binarizer = Binarizer(name, device=device, threads=threads, tta=tta)
    binarizer.binarize(np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64))  # warm-up

    def run(gray: np.ndarray) -> np.ndarray:
        return threshold(binarizer.binarize(gray), MODEL_THRESHOLD)

    return Method(spec, "model", run, {"threshold": MODEL_THRESHOLD, "tta": tta})


def make_method(spec: str, threads: int | None = None, device: str = "cpu") -> Method:
    """A classic method when ``spec`` names one (see :data:`CLASSIC`), else one of our models.

    Raises:
        UsageError: malformed classic method.
        ModelError: the model cannot be loaded.
    """
    if spec.partition(":")[0].lower() in CLASSIC:
        return classic_method(spec)
    return model_method(spec, threads=threads, device=device)


# --------------------------------------------------------------------------------------------------
# Benchmark (ocrobin bench)
# --------------------------------------------------------------------------------------------------


def _is_set(d: Path) -> bool:
    return (d / "img").is_dir() and (d / "gt").is_dir()


def find_sets(root: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """The benchmark sets under ``root`` as (name, folder): ``root`` itself when it is a set, else its sets.

    Raises:
        DataError: no set found.
    """
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"{r}: data folder not found")
    sets = [(d.name, d) for d in datasets.find_sets(r) if _is_set(d)]
    if not sets:
        raise DataError(f"{r}: no SET/img + SET/gt folders (nor img/ + gt/ itself)")
    return sets


def set_pages(set_dir: Path, limit: int | None = None) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """(stem, image, ground truth or None) of each page of a set, sorted by stem, at most ``limit``."""
    imgs, notes = _files_by_stem(set_dir / "img", prefer_bin=False)
    gts, gnotes = _files_by_stem(set_dir / "gt", prefer_bin=False)
    pages = [(s, imgs[s], gts.get(s)) for s in sorted(imgs)]
    if limit is not None:
        pages = pages[:limit]
    return pages, notes + gnotes


def _safe_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,-]+", "_", Path(spec).name if os.sep in spec else spec) or "method"


def _check_outputs(sets: list[tuple[str, Path]], outdir: Path, methods: Sequence[str], save_pred: bool,
                   limit: int | None) -> None:
    """Refuse a benchmark whose results or saved pages would overwrite one of its inputs."""
    inputs: list[Path] = []
    outputs = [outdir / "results.json", outdir / "results.md", outdir / "fm_vs_speed.png"]
    for set_name, set_dir in sets:
        pages, _ = set_pages(set_dir, limit)
        for stem, img, gt in pages:
            inputs.extend(p for p in (img, gt) if p is not None)
            if save_pred:
                outputs.extend(outdir / "pred" / set_name / _safe_name(m) / f"{stem}{PRED_SUFFIX}" for m in methods)
        if (set_dir / "weights").is_dir():
            inputs.extend((set_dir / "weights").iterdir())
    check_no_clash(inputs, outputs)


def run_bench(data: str | os.PathLike[str], methods: Sequence[str] = DEFAULT_METHODS,
              out: str | os.PathLike[str] | None = None, limit: int | None = None, threads: int | None = None,
              save_pred: bool = False, generate_weights: bool = True, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Binarize every page of every set with every method, score it and time it (each method runs once,
    untimed, on the first page it meets, so the times are those of a long batch).

    Args:
        data: a set (``img/`` + ``gt/`` [+ ``weights/``]) or a folder of sets.
        methods: method specs (see :func:`make_method`).
        out: folder for ``results.json``, ``results.md``, ``fm_vs_speed.png`` (and ``pred/``); None
            writes nothing.
        limit: at most this many pages per set.
        threads: torch CPU threads for our models.
        save_pred: keep the binarized pages under ``OUT/pred/SET/METHOD/<stem>.bin.png``.
        generate_weights: generate pFM weights for pages without weight files.
        progress: show a progress bar over pages.
        log: where one-line reports (failures) go.

    Returns:
        The results dictionary written to ``results.json``.

    Raises:
        DataError: no sets found.
        UsageError: no methods, or a malformed method.
    """
    from tqdm import tqdm

    if not methods:
        raise UsageError("no methods given")
    if save_pred and out is None:
        raise UsageError("--save-pred needs an output folder")
    sets = find_sets(data)
    outdir = Path(out) if out is not None else None
    if outdir is not None:
        _check_outputs(sets, outdir, methods, save_pred, limit)

    say = (lambda m: tqdm.write(m)) if progress else log
    runners: list[tuple[str, Method | None, str | None]] = []
    for spec in methods:
        try:
            runners.append((spec, make_method(spec, threads=threads), None))
        except UsageError:
            raise
        except OcrobinError as e:
            say(f"method {spec}: cannot load ({e})")
            runners.append((spec, None, str(e)))

    warmed: set[str] = set()  # methods that have run once, untimed, on the first page they met
    results: dict[str, Any] = {
        "data": str(data), "methods": list(methods), "limit": limit, "threads": threads, "warm_up": True,
        "threshold": MODEL_THRESHOLD, "generate_weights": generate_weights, "sets": [],
    }
    for set_name, set_dir in sets:
        pages, notes = set_pages(set_dir, limit)
        for n in notes:
            say(n)
        per_method: dict[str, dict[str, Any]] = {
            spec: {"method": spec, "kind": m.kind if m else None, "params": m.params if m else {},
                   "pages": [], "failed": [], "seconds": 0.0, "megapixels": 0.0}
            for spec, m, _ in runners
        }
        set_mp = 0.0
        page_fail: list[dict[str, str]] = []
        bar = tqdm(pages, desc=set_name, unit="page", disable=not progress, leave=False)
        for stem, img_path, gt_path in bar:
            try:
                if gt_path is None:
                    raise InputError(f"{img_path}: no ground truth '{stem}' in {set_dir / 'gt'}")
                gray = read_gray(img_path)
                gt = read_ground_truth(gt_path)
                _size_check(gt, gray, gt_path, img_path)
                weights = page_weights(gt, stem, set_dir / "weights", generate_weights)
            except OcrobinError as e:
                say(f"{set_name}/{stem}: skipped: {e}")
                page_fail.append({"stem": stem, "error": str(e)})
                continue
            mp = gt.size / 1e6
            set_mp += mp
            for spec, method, load_error in runners:
                rec = per_method[spec]
                if method is None:
                    rec["failed"].append({"stem": stem, "error": f"cannot load: {load_error}"})
                    continue
                try:
                    if spec not in warmed:  # time the steady state: first-call costs are not per page
                        method.run(gray)
                        warmed.add(spec)
                    t0 = time.perf_counter()
                    ink = method.run(gray)
                    seconds = time.perf_counter() - t0
                    ink = np.asarray(ink, dtype=bool)
                    _size_check(gt, ink, gt_path, Path(f"{spec} output"))
                    row = scores_row(stem, metrics.evaluate(gt, ink, weights), weights)
                except Exception as e:  # a failing method must not stop the benchmark
                    msg = str(e) if isinstance(e, OcrobinError) else f"{type(e).__name__}: {e}"
                    say(f"{set_name}/{stem}: method {spec} failed: {msg}")
                    rec["failed"].append({"stem": stem, "error": msg})
                    continue
                row["seconds"] = seconds
                row["megapixels"] = mp
                rec["pages"].append(row)
                rec["seconds"] += seconds
                rec["megapixels"] += mp
                if save_pred and outdir is not None:
                    write_binary(outdir / "pred" / set_name / _safe_name(spec) / f"{stem}{PRED_SUFFIX}", ink)
        bar.close()
        method_list = []
        for spec, _, _ in runners:
            rec = per_method[spec]
            rec["mean"] = metrics.mean_scores(rec["pages"])
            rec["s_per_mp"] = rec["seconds"] / rec["megapixels"] if rec["megapixels"] else None
            method_list.append(rec)
        results["sets"].append({"name": set_name, "path": str(set_dir), "pages": len(pages) - len(page_fail),
                                "megapixels": set_mp, "skipped": page_fail, "methods": method_list})
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        write_json(outdir / "results.json", results)
        with atomic_path(outdir / "results.md") as tmp:
            tmp.write_text(markdown_table(results), encoding="utf-8")
        plot_fm_vs_speed(results, outdir / "fm_vs_speed.png")
    return results


def _sort_key(rec: dict[str, Any]) -> tuple[int, float]:
    fm = rec["mean"].get("fm")
    return (0, -fm) if fm is not None else (1, 0.0)


def markdown_table(results: dict[str, Any]) -> str:
    """One Markdown table per set: method, FM, pFM, PSNR, DRD, s/MP, rows sorted by FM (best first)."""
    out: list[str] = []
    for s in results["sets"]:
        out.append(f"## {s['name']} ({s['pages']} pages, {s['megapixels']:.1f} MP)\n")
        out.append("| method | " + " | ".join(h for _, h in TABLE_COLUMNS) + " | s/MP |")
        out.append("|---|" + "---:|" * (len(TABLE_COLUMNS) + 1))
        sources: set[str] = set()
        for rec in sorted(s["methods"], key=_sort_key):
            mean = rec["mean"]
            cells = [_fmt(mean.get(k), 3 if k == "drd" else 2) for k, _ in TABLE_COLUMNS]
            spm = rec.get("s_per_mp")
            cells.append("n/a" if spm is None else f"{spm:.3f}")
            name = rec["method"] + (f" ({len(rec['failed'])} failed)" if rec["failed"] else "")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
            sources.update(p.get("pfm_weights") or "none" for p in rec["pages"])
        note = {"file": "DIBCO weight files", "generated": "weights generated from the ground truth",
                "none": "no weights (pFM n/a)"}
        if sources:
            out.append("\npFM: " + "; ".join(note.get(x, x) for x in sorted(sources)) + ".")
        out.append("")
    return "\n".join(out)


def plot_fm_vs_speed(results: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Scatter plot of mean FM against seconds per megapixel (log scale), one colour per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    markers = "osD^v<>ph*"
    for i, s in enumerate(results["sets"]):
        xs, ys, names = [], [], []
        for rec in s["methods"]:
            fm, spm = rec["mean"].get("fm"), rec.get("s_per_mp")
            if fm is None or spm is None:
                continue
            xs.append(max(spm, 1e-4))
            ys.append(fm)
            names.append(rec["method"])
        ax.scatter(xs, ys, marker=markers[i % len(markers)], label=s["name"])
        for x, y, n in zip(xs, ys, names, strict=True):
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("seconds per megapixel (log scale)")
    ax.set_ylabel("mean F-measure (%)")
    ax.set_title("F-measure against speed")
    ax.grid(True, which="both", alpha=0.3)
    if results["sets"]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

