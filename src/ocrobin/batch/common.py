"""What every batch entry point shares: run options, the error policy, the counters of a run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ..exceptions import OcrobinError, UsageError
from ..infer import check_resize
from ..polarity import MODES

ErrorHandler = Callable[[str, Exception], None]

#: What a batch catches per input and hands to the error policy (anything else is a bug and stops the run).
PAGE_ERRORS = (OcrobinError, OSError, MemoryError, ValueError)


def raise_error(name: str, exn: Exception) -> None:
    """Error policy of library calls: stop at the first bad input."""
    raise exn


def error_message(name: str, exn: BaseException) -> str:
    """One line naming the input: the library's own message, or the exception's kind and text."""
    msg = str(exn) if isinstance(exn, OcrobinError) else f"{type(exn).__name__}: {exn}"
    msg = " ".join(msg.split())
    return msg if msg.startswith(name) else f"{name}: {msg}"


@dataclass(frozen=True)
class Options:
    """How pages are binarized and written, whatever they come from.

    Attributes:
        fmt: ``png`` (1-bit PNG) or ``tif`` (1-bit TIFF, CCITT G4) for files.
        prob: also write the 8-bit ink probability.
        threshold: ink where the probability is above it.
        polarity: ``auto``, ``normal`` or ``inverted`` (see :mod:`ocrobin.polarity`).
        overwrite: redo outputs that exist.
        resize: the model sees each page resized by this factor (None: the binarizer's own).
    """

    fmt: str = "png"
    prob: bool = False
    threshold: float = 0.5
    polarity: str = "auto"
    overwrite: bool = False
    resize: float | None = None

    def __post_init__(self) -> None:
        if self.fmt not in ("png", "tif", "tiff"):
            raise UsageError(f"unknown output format {self.fmt!r} (png or tif)")
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError("the threshold must lie in [0, 1]")
        if self.polarity not in MODES:
            raise UsageError(f"unknown polarity {self.polarity!r} ({', '.join(MODES)})")
        if self.resize is not None:
            check_resize(self.resize)


@dataclass
class Summary:
    """Counters of a batch run."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    pixels: int = 0
    seconds: float = 0.0
    elsewhere: int = 0
    redone: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Summary) -> None:
        """Merge another run's counters into this one."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed
        self.pixels += other.pixels
        self.seconds += other.seconds
        self.elsewhere += other.elsewhere
        self.redone += other.redone
        self.errors.extend(other.errors)

    def line(self) -> str:
        """One-line closing summary."""
        mps = self.pixels / 1e6 / self.seconds if self.seconds > 0 else 0.0
        extra = ""
        if self.elsewhere:
            extra += f", {self.elsewhere} done by other runs"
        if self.redone:
            extra += f", {self.redone} redone after an interrupted run"
        return (f"done {self.done}, skipped {self.skipped}, failed {self.failed}{extra}; "
                f"{self.pixels / 1e6:.1f} MP in {self.seconds:.1f} s ({mps:.2f} MP/s)")


def reporting_handler(summary: Summary, write: Callable[[str], None] | None = None) -> ErrorHandler:
    """Error policy of a batch: print one line naming the input, count it, go on."""
    out = write or (lambda s: print(s, file=sys.stderr))

    def handle(name: str, exn: Exception) -> None:
        msg = error_message(name, exn)
        summary.failed += 1
        summary.errors.append((name, msg))
        out(f"ocrobin: error: {msg}")

    return handle
