"""Finding the pages of a run: files, folders (recursively) and globs, with nothing skipped in silence.

Every path given or found that will not be binarized is named with its reason (a broken link, a file that
cannot be read, an output folder inside an input folder), except files whose suffix is not an image's,
which are counted once. Output paths are checked against input paths before anything is written.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import InputError
from ..imageio import IMAGE_SUFFIXES
from ..paths import check_no_clash, inside, resolved
from .common import ErrorHandler, raise_error

#: Folder of claim files that several runs on one output folder share (see :mod:`.claims`).
CLAIMS_DIR = ".ocrobin-claims"


@dataclass
class Job:
    """One input file and where its outputs go (``rel`` is the output path without suffix)."""

    path: Path
    rel: Path


@dataclass
class Found:
    """What the input walk found: the jobs, and what it left out."""

    jobs: list[Job] = field(default_factory=list)
    ignored: int = 0
    notices: list[str] = field(default_factory=list)


def output_paths(outdir: Path, rel: Path, page: int | None, fmt: str) -> tuple[Path, Path]:
    """(binary output, probability output) paths; ``page`` is 1-based for multi-page inputs."""
    stem = rel.name if page is None else f"{rel.name}-{page:04d}"
    base = outdir / rel.parent / stem
    ext = "tif" if fmt in ("tif", "tiff") else "png"
    return base.with_name(base.name + f".bin.{ext}"), base.with_name(base.name + ".prob.png")


def _image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


class _Walk:
    def __init__(self, exclude: list[Path], handler: ErrorHandler, notice: Callable[[str], None]) -> None:
        self.exclude = exclude
        self.handler = handler
        self.notice = notice
        self.found = Found()
        self.excluded_said: set[Path] = set()

    def _excluded(self, p: Path, root: Path | None) -> bool:
        """Whether ``p`` lies in an output folder below ``root`` (an input folder, a glob's fixed part).

        An output folder that is ``root`` itself or holds it is not left out: the pages are read from there
        (outputs beside the pages; a rerun then finds its outputs among the inputs and is refused).
        """
        for ex in self.exclude:
            if inside(p, ex) and (root is None or (inside(ex, root) and ex != resolved(root))):
                if ex not in self.excluded_said:
                    self.excluded_said.add(ex)
                    self.notice(f"{ex}: the output folder lies inside an input folder; left out of the inputs")
                return True
        return False

    def file(self, p: Path, rel: Path, given: bool) -> None:
        """One candidate file: a job, a notice, or one more ignored file."""
        if p.is_symlink() and not p.exists():
            self.handler(str(p), InputError(f"{p}: broken symbolic link (target {os.readlink(p)} missing)"))
            return
        if not _image_name(p) and not given:
            self.found.ignored += 1
            return
        if not os.access(p, os.R_OK):
            self.handler(str(p), InputError(f"{p}: cannot read (permission denied)"))
            return
        self.found.jobs.append(Job(p, rel))

    def folder(self, root: Path) -> None:
        seen: set[str] = set()
        n_before = len(self.found.jobs)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=self._walk_error):
            d = Path(dirpath)
            real = os.path.realpath(d)
            if real in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add(real)
            keep = []
            for name in sorted(dirnames):
                sub = d / name
                if name == CLAIMS_DIR or self._excluded(sub, root):
                    continue
                if sub.is_symlink() and not sub.exists():
                    self.handler(str(sub), InputError(f"{sub}: broken symbolic link"))
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                p = d / name
                self.file(p, p.relative_to(root).with_suffix(""), given=False)
        if len(self.found.jobs) == n_before:
            self.handler(str(root), InputError(f"{root}: directory holds no images"))

    def _walk_error(self, e: OSError) -> None:
        self.handler(str(e.filename), InputError(f"{e.filename}: cannot read directory ({e.strerror or e})"))


def find_inputs(inputs: Iterable[str], handler: ErrorHandler = raise_error, exclude: Iterable[str | Path] = (),
                notice: Callable[[str], None] | None = None) -> Found:
    """Expand files, directories (recursively, layout mirrored) and globs into jobs.

    Args:
        inputs: files, directories or glob patterns (``**`` allowed).
        handler: error policy for inputs that cannot be binarized (broken links, unreadable files,
            patterns that match nothing, output names two inputs share).
        exclude: folders never read (the run's own output folder).
        notice: where to say what was left out on purpose (default: nowhere).

    Returns:
        the jobs, the count of non-image files ignored and the notices.

    Raises:
        InputError: with the default handler, at the first input that cannot be binarized.
    """
    walk = _Walk([resolved(e) for e in exclude], handler, notice or (lambda s: None))
    specs = list(inputs)
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            # the output folder given beside other inputs (``scans/*`` expanded by the shell) is left out;
            # given alone it is binarized in place
            if len(specs) > 1 and resolved(p) in walk.exclude and walk._excluded(p, None):
                continue
            walk.folder(p)
        elif p.is_file() or p.is_symlink():
            walk.file(p, Path(p.stem), given=True)
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            files = [m for m in matches if not m.is_dir()]
            if not files:
                handler(spec, InputError(f"{spec}: no such file" if not matches else f"{spec}: matches no files"))
            root = Path(*itertools.takewhile(lambda q: not glob.has_magic(q), p.parts))  # the glob's fixed part
            for m in files:
                if not walk._excluded(m, root):
                    walk.file(m, Path(m.stem), given=False)
    seen: dict[Path, Path] = {}
    unique = []
    for j in walk.found.jobs:
        if j.rel in seen:
            if seen[j.rel] != j.path:
                handler(str(j.path), InputError(f"{j.path}: output name clashes with {seen[j.rel]}"))
            continue
        seen[j.rel] = j.path
        unique.append(j)
    walk.found.jobs = unique
    return walk.found


def collect_inputs(inputs: Iterable[str], handler: ErrorHandler = raise_error,
                   exclude: Iterable[str | Path] = ()) -> list[Job]:
    """The jobs of :func:`find_inputs` (what it left out goes nowhere)."""
    return find_inputs(inputs, handler, exclude).jobs


def check_file_outputs(jobs: list[Job], outdir: str | os.PathLike[str], fmt: str, prob: bool,
                       extra: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse a run one of whose output files (or ``extra`` files, e.g. a report) is one of its inputs.

    Raises:
        UsageError: one line naming both paths.
    """
    out = Path(outdir)
    outputs: list[Path] = [Path(e) for e in extra]
    for j in jobs:
        b, pr = output_paths(out, j.rel, None, fmt)
        outputs.append(b)
        if prob:
            outputs.append(pr)
    check_no_clash([j.path for j in jobs], outputs)
