"""The run report: one row per page as it finishes, so a lab can find the pages that need a human look.

``ocrobin binarize ... --report run.jsonl`` (or ``.csv``) appends a row per page — done, skipped, failed,
or done by another run on the same folder — and flushes it at once, so a killed run keeps its report and a
resumed run completes it. :func:`read_report` reads it back (a line cut by a kill is ignored) and
:func:`summarize` / :func:`plot_confidence` are what ``ocrobin report`` prints and draws.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ..exceptions import InputError, UsageError

#: Columns of a report row, in order (CSV header).
FIELDS = ("input", "key", "page", "output", "status", "width", "height", "dpi", "seconds", "ink_fraction",
          "polarity", "confidence", "flags", "error")
#: Row statuses.
STATUSES = ("done", "skipped", "failed", "elsewhere")


def report_format(path: str | os.PathLike[str]) -> str:
    """``jsonl`` or ``csv``, from the file name.

    Raises:
        UsageError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise UsageError(f"--report {path}: name it .jsonl or .csv")


class Report:
    """Appends rows to a report file, flushing each one.

    Args:
        path: ``.jsonl`` or ``.csv`` file; created with its folder, appended to when it exists.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fmt = report_format(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        cut = not new and _last_byte(self.path) != b"\n"  # a killed run's last row, cut: not to be joined to ours
        self._f: IO[str] = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        if cut:
            self._write("\n")
        if self.fmt == "csv" and new:
            self._write(self._csv_line(dict(zip(FIELDS, FIELDS, strict=True))))

    @staticmethod
    def _csv_line(row: dict[str, Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(["" if row.get(k) is None else row[k] for k in FIELDS])
        return buf.getvalue()

    def _write(self, line: str) -> None:
        self._f.write(line)  # one write per row: a kill leaves whole rows and at most one cut line
        self._f.flush()

    def row(self, **fields: Any) -> None:
        """Append one row (unknown fields are refused, missing ones are empty)."""
        bad = set(fields) - set(FIELDS)
        if bad:
            raise ValueError(f"unknown report fields {sorted(bad)}")
        row = {k: fields.get(k) for k in FIELDS}
        if self.fmt == "jsonl":
            self._write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            flat = dict(row)
            flat["flags"] = ";".join(row["flags"] or [])
            flat["dpi"] = "x".join(f"{v:g}" for v in row["dpi"]) if row["dpi"] else None
            self._write(self._csv_line(flat))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Report:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_report(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a report, in file order (a line cut by a kill is left out, also where a rerun appended to it).

    Raises:
        InputError: the file cannot be read.
        UsageError: not a ``.jsonl`` or ``.csv`` name.
    """
    fmt = report_format(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from e
    rows: list[dict[str, Any]] = []
    if fmt == "jsonl":
        for line in text.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict):
                rows.append(r)
        return rows
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    for r in csv.DictReader(lines):
        if any(r.get(k) is None for k in FIELDS):  # fewer cells than columns: a row cut by a kill
            continue
        out: dict[str, Any] = {k: (r.get(k) or None) for k in FIELDS}
        for k in ("page", "width", "height"):
            out[k] = int(out[k]) if out[k] else None
        for k in ("seconds", "ink_fraction", "confidence"):
            out[k] = float(out[k]) if out[k] else None
        out["flags"] = out["flags"].split(";") if out["flags"] else []
        out["dpi"] = [float(v) for v in out["dpi"].split("x")] if out["dpi"] else None
        rows.append(out)
    return rows


def latest(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per page: the last one, except that a ``skipped`` row keeps the result it skipped over."""
    by: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for r in rows:
        k = (r.get("input"), r.get("key"), r.get("page"))
        if r.get("status") == "skipped" and k in by and by[k].get("status") == "done":
            continue
        by[k] = r
    return list(by.values())


def _where(r: dict[str, Any]) -> str:
    s = str(r.get("input") or "?")
    if r.get("key"):
        s += f":{r['key']}"
    if r.get("page"):
        s += f" page {r['page']}"
    return s


def summarize(rows: list[dict[str, Any]], least: int = 10) -> str:
    """What ``ocrobin report`` prints: counts, flags, confidence, speed, the least confident and failed pages."""
    pages = latest(rows)
    status = Counter(r.get("status") for r in pages)
    flags = Counter(f for r in pages for f in (r.get("flags") or []))
    done = [r for r in pages if r.get("status") == "done"]
    conf = [float(r["confidence"]) for r in done if r.get("confidence") is not None]
    lines = [f"{len(pages)} page(s): " + ", ".join(f"{status.get(s, 0)} {s}" for s in STATUSES)]
    if flags:
        lines.append("flags: " + ", ".join(f"{n} {f}" for f, n in flags.most_common()))
    if conf:
        q = statistics.quantiles(conf, n=10, method="inclusive") if len(conf) > 1 else [conf[0]] * 9
        lines.append(f"confidence: min {min(conf):.3f}, 10th percentile {q[0]:.3f}, median "
                     f"{statistics.median(conf):.3f}, max {max(conf):.3f}")
    secs = sum(float(r.get("seconds") or 0) for r in done)
    mp = sum((r.get("width") or 0) * (r.get("height") or 0) for r in done) / 1e6
    if secs > 0:
        lines.append(f"{mp:.1f} MP in {secs:.1f} s of binarization ({mp / secs:.2f} MP/s)")
    worst = sorted((r for r in done if r.get("confidence") is not None), key=lambda r: float(r["confidence"]))
    if worst and least > 0:
        lines.append(f"least confident {min(least, len(worst))}:")
        for r in worst[:least]:
            lines.append(f"  {float(r['confidence']):.3f}  {_where(r)}  {','.join(r.get('flags') or []) or '-'}")
    failed = [r for r in pages if r.get("status") == "failed"]
    if failed:
        lines.append(f"failed {len(failed)}:")
        lines.extend(f"  {r.get('error') or _where(r)}" for r in failed)
    return "\n".join(lines)


def plot_confidence(rows: list[dict[str, Any]], path: str | os.PathLike[str], low: float | None = None) -> None:
    """Histogram of the pages' confidence, written atomically (PNG, or what the suffix says)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..imageio import atomic_path

    conf = [float(r["confidence"]) for r in latest(rows)
            if r.get("status") == "done" and r.get("confidence") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(conf, bins=40, range=(0.0, 1.0), color="tab:blue")
    if low is not None:
        ax.axvline(low, color="tab:red", lw=1, label=f"low-confidence below {low:g}")
        ax.legend()
    ax.set_xlabel("confidence")
    ax.set_ylabel("pages")
    ax.set_title(f"{len(conf)} page(s)")
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=100)
    plt.close(fig)
