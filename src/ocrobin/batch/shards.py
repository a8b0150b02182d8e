"""Batch binarization of webdataset shards: input shard *i* becomes output shard ``pattern % i``.

An output shard gets its final name only when every input sample has a result — its binary page or, for a
sample that failed, an ``error.txt`` member under its key — so downstream tools see every input key once.
An interrupted run (Ctrl-C, a kill, an input shard that cannot be read to the end) leaves at most a
temporary file, which the next run removes before redoing that shard; finished shards are skipped.
"""

from __future__ import annotations

import os
import socket
import tarfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import shards
from ..exceptions import ShardError, UsageError
from ..imageio import decode_pages
from ..infer import Binarizer
from ..paths import check_no_clash, resolved
from .claims import STALE_AFTER, Claims, pid_alive
from .common import PAGE_ERRORS, ErrorHandler, Options, Summary, error_message, raise_error
from .page import binarize_page
from .report import Report
from .workers import BinarizerSpec, Runner

#: Member holding the reason a sample failed, in place of its binary page.
ERROR_KEY = "error.txt"


def shard_outputs(urls: list[str], pattern: str) -> list[str]:
    """Output shard names: input shard *i* goes to ``pattern % i``."""
    return [shards.shard_name(pattern, i) for i in range(len(urls))]


def plan_shards(inputs: str | list[str], output_pattern: str) -> tuple[list[str], list[str]]:
    """(input shards, output shards), one output per input, none of them an input.

    Raises:
        UsageError: no input shards, a pattern that does not number the outputs, or an output that is an
            input shard.
    """
    urls = shards.expand_urls(inputs)
    if not urls:
        raise UsageError(f"{' '.join([inputs] if isinstance(inputs, str) else inputs)}: no shards")
    outs = shard_outputs(urls, output_pattern)
    if len(set(outs)) != len(outs):
        raise UsageError(f"output pattern {output_pattern!r} must number the shards (e.g. out-%06d.tar)")
    check_no_clash(urls, outs, "output shard")
    return urls, outs


def sample_name(url: str, sample: dict[str, Any]) -> str:
    return f"{url}:{sample.get('__key__', '?')}"


@dataclass(frozen=True)
class SampleTask:
    """One shard sample as a worker gets it."""

    sample: dict[str, Any]
    input_key: str
    opts: Options


def run_sample(binarizer: Binarizer, task: SampleTask) -> tuple[dict[str, Any], dict[str, Any], Exception | None]:
    """Binarize one sample: (output sample, report row, error or None). A failed sample's output holds
    ``error.txt`` instead of ``bin.png``."""
    sample = task.sample
    url = str(sample.get("__url__", "?"))
    key = str(sample.get("__key__", "?"))
    try:
        found = shards.image_key(sample, task.input_key)
        page = next(decode_pages(sample[found], f"{url}:{key}.{found}"))
        enc = binarize_page(binarizer, page, task.opts, shard=True)
    except PAGE_ERRORS as e:
        msg = error_message(sample_name(url, sample), e)
        return ({"__key__": key, ERROR_KEY: msg.encode()},
                {"input": url, "key": key, "status": "failed", "error": msg}, e)
    out: dict[str, Any] = {"__key__": key, shards.BIN_KEY: enc.binary}
    if enc.prob is not None:
        out[shards.PROB_KEY] = enc.prob
    r = enc.result
    row = {"input": url, "key": key, "status": "done", "width": r.width, "height": r.height,
           "dpi": list(page.dpi) if page.dpi else None, "seconds": round(r.seconds, 4),
           "ink_fraction": round(r.ink_fraction, 6), "polarity": r.polarity, "confidence": round(r.confidence, 4),
           "flags": r.flags}
    return out, row, None


def _run_indexed(binarizer: Binarizer, item: tuple[int, SampleTask]
                 ) -> tuple[dict[str, Any], dict[str, Any], Exception | None]:
    """:func:`run_sample` on a (shard index, task) pair: the index tells the results of shards apart."""
    return run_sample(binarizer, item[1])


def binarize_sample(binarizer: Binarizer, sample: dict[str, Any], input_key: str = shards.GRAY_KEY,
                    t: float = 0.5, prob: bool = False, invert: bool = False,
                    polarity: str | None = None) -> dict[str, Any]:
    """Binarize one shard sample; returns the output sample (``__key__``, ``bin.png``[, ``prob.png``]).

    ``bin.png`` follows the training format: 0 = ink, 255 = paper, 8-bit.

    Raises:
        ShardError: the sample lacks the input key.
        InputError: the image cannot be decoded.
    """
    pol = "inverted" if invert else (polarity or binarizer.polarity)
    opts = Options(prob=prob, threshold=t, polarity=pol)
    out, _, err = run_sample(binarizer, SampleTask(sample, input_key, opts))
    if err is not None:
        raise err
    return out


def _leftovers(out: str) -> list[Path]:
    """Temporary files of ``out`` left by runs that are gone (this host's dead processes, or this process)."""
    p = Path(out)
    found = []
    for tmp in p.parent.glob(f".{p.name}.*.tmp"):
        parts = tmp.name[len(p.name) + 2:].split(".")
        try:
            pid = int(parts[0])
        except (ValueError, IndexError):
            continue
        if len(parts) >= 3 and parts[1] != socket.gethostname():
            continue
        if pid == os.getpid() or not pid_alive(pid):  # ours: left by an earlier, interrupted call
            found.append(tmp)
    return found


def _keys_of(path: str) -> list[str]:
    keys: list[str] = []
    with tarfile.open(path) as tf:
        for m in tf:
            if m.isfile():
                k = m.name.split(".", 1)[0]
                if not keys or keys[-1] != k:
                    keys.append(k)
    return keys


def _tar_complete(url: str) -> bool:
    """Whether a local tar shard ends with its end-of-archive block: one cut at a member boundary reads
    as a shorter archive, without an error (other URLs cannot be checked and count as complete)."""
    if "://" in url or url.startswith("pipe:"):
        return True
    try:
        with tarfile.open(url) as tf:
            end = 0
            for m in tf:
                end = m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            assert tf.fileobj is not None
            tf.fileobj.seek(end)
            return tf.fileobj.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE)
    except (OSError, EOFError, tarfile.TarError):
        return False


def read_error_text(url: str, exn: BaseException) -> str:
    """What went wrong reading a shard, in words: tarfile's and webdataset's errors carry the open file
    object and the name in their arguments, which say nothing to a reader."""
    text = str(exn.args[0]) if exn.args and isinstance(exn.args[0], str) else str(exn)
    text = text.split(" @ <", 1)[0]
    if text.startswith(f"{url}: "):
        text = text[len(url) + 2:]
    if isinstance(exn, tarfile.ReadError) or "header" in text or "end of data" in text:
        return f"corrupt or truncated tar archive ({text})"
    return text


def binarize_shards(
    binarizer: Binarizer | None,
    inputs: str | list[str],
    output_pattern: str,
    *,
    input_key: str = shards.GRAY_KEY,
    t: float = 0.5,
    prob: bool = False,
    invert: bool = False,
    polarity: str | None = None,
    overwrite: bool = False,
    handler: ErrorHandler = raise_error,
    progress: bool = False,
    workers: int = 1,
    spec: BinarizerSpec | None = None,
    report: Report | None = None,
    claims: bool = True,
    claim_timeout: float = STALE_AFTER,
) -> Summary:
    """Binarize webdataset shards; input shard *i* becomes output shard ``output_pattern % i``.

    A finished output shard is skipped on a rerun unless ``overwrite``. A sample that fails is reported
    through ``handler`` and recorded in its output shard as ``error.txt``; a shard that cannot be read
    to the end is reported and gets no output (a rerun redoes it). Arguments as in
    :func:`ocrobin.batch.binarize_files`.
    """
    urls, outs = plan_shards(inputs, output_pattern)
    pol = "inverted" if invert else (polarity or (binarizer.polarity if binarizer is not None else None)
                                      or (spec.polarity if spec else "auto"))
    opts = Options(prob=prob, threshold=t, polarity=pol, overwrite=overwrite)
    summary = Summary()
    root = resolved(outs[0]).parent
    owned = Claims(root, stale_after=claim_timeout) if claims else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="page", dynamic_ncols=True)
    t0 = time.perf_counter()

    def row(**fields: Any) -> None:
        if report is not None:
            report.row(**fields)

    def skip(url: str, out: str) -> None:
        keys = _keys_of(out)
        summary.skipped += len(keys)
        for k in keys:
            row(input=url, key=k, output=f"{out}:{k}", status="skipped")

    @dataclass
    class Open:
        """A shard on its way: read by the task generator, written as its results come back in order."""

        i: int
        url: str
        out: str
        claimed: bool = False
        skipped: bool = False  # nothing to do but its skipped rows, in their place among the others
        sink: Any = None
        left: list[Path] = field(default_factory=list)
        read_errors: list[str] = field(default_factory=list)
        n: int = 0
        done: int = 0
        pixels: int = 0
        rows: list[dict[str, Any]] = field(default_factory=list)  # reported once written: an unfinished shard has none

    def tasks(todo: Iterable[tuple[int, str, str, bool]], opened: deque[Open],
              deferred: list[tuple[int, str, str]]) -> Iterator[tuple[int, SampleTask]]:
        """The samples of every shard to do, one shard after the other, so the workers go from one shard
        straight on to the next; each shard is skipped, put off (claimed by another run) or opened (claimed,
        leftovers of an interrupted run removed, a temporary output started) just before its samples."""
        for i, url, out, claimed in todo:
            if not overwrite and os.path.exists(out):
                opened.append(Open(i, url, out, skipped=True))
                continue
            if not claimed and owned is not None and not owned.claim(str(resolved(out))):
                deferred.append((i, url, out))
                continue
            st = Open(i, url, out, claimed=owned is not None, left=_leftovers(out))
            opened.append(st)
            for tmp in st.left:
                tmp.unlink(missing_ok=True)
            st.sink = shards.ShardSink(output_pattern, maxcount=1 << 62, start=i)
            st.sink.open()

            def on_read_error(exn: Exception, st: Open = st) -> bool:
                st.read_errors.append(read_error_text(st.url, exn))  # the shard is reported once
                return True

            for sample in shards.iter_samples([url], handler=on_read_error):
                yield i, SampleTask(sample, input_key, opts)

    def let_go(st: Open) -> None:
        if st.claimed and owned is not None:
            owned.release(str(resolved(st.out)))

    def finish(st: Open) -> None:
        """Write a shard whose samples are all back (or report it unreadable), then let go of its claim."""
        try:
            if st.skipped:
                skip(st.url, st.out)
                return
            if not st.read_errors and not _tar_complete(st.url):
                st.read_errors.append("ends before its end-of-archive block (cut short)")
            if st.read_errors:
                st.sink.abort()
                msg = f"{st.url}: {st.read_errors[0]}; {st.out} not written (a rerun redoes it)"
                handler(st.url, ShardError(msg))
                row(input=st.url, output=st.out, status="failed", error=msg)
                return
            st.sink.close()
            summary.done += st.done
            summary.pixels += st.pixels
            for r in st.rows:
                row(**r)
            if st.left:
                summary.redone += st.n
        finally:
            let_go(st)

    def run_shards(runner: Runner, todo: Iterable[tuple[int, str, str, bool]],
                   deferred: list[tuple[int, str, str]]) -> None:
        """Binarize ``todo`` (index, url, output, already claimed) as one stream of samples."""
        opened: deque[Open] = deque()
        try:
            for (i, _), (out_sample, r, err) in runner.map(_run_indexed, tasks(todo, opened, deferred)):
                while opened[0].i != i:  # every result of the shards before this one is in
                    finish(opened.popleft())
                st = opened[0]
                st.sink.write(out_sample)
                st.n += 1
                if err is None:
                    st.done += 1
                    st.pixels += int(r["width"] * r["height"])
                else:
                    handler(sample_name(st.url, {"__key__": r["key"]}), err)
                r["output"] = f"{st.out}:{r['key']}"
                st.rows.append(r)
                if bar is not None:
                    bar.update(1)
            while opened:
                finish(opened.popleft())
        except BaseException as e:
            for st in opened:  # the next run finds an interrupted one's temporary file and says it redid it
                if st.sink is not None:
                    st.sink.abort(keep=isinstance(e, KeyboardInterrupt))
                let_go(st)
            raise

    deferred: list[tuple[int, str, str]] = []
    runner = Runner(binarizer, spec, workers)
    try:
        with runner:
            run_shards(runner, ((i, url, out, False) for i, (url, out) in enumerate(zip(urls, outs, strict=True))),
                       deferred)
            while deferred:
                assert owned is not None
                for item in list(deferred):
                    i, url, out = item
                    key = str(resolved(out))
                    if not owned._path(key).exists():  # let go: done, or given up (an interrupted run)
                        if os.path.exists(out):
                            deferred.remove(item)
                            keys = _keys_of(out)
                            summary.elsewhere += len(keys)
                            for k in keys:
                                row(input=url, key=k, output=f"{out}:{k}", status="elsewhere")
                        elif owned.claim(key):
                            deferred.remove(item)
                            run_shards(runner, [(i, url, out, True)], [])
                    elif owned.stale(key) and owned.claim(key):
                        deferred.remove(item)
                        run_shards(runner, [(i, url, out, True)], [])
                if deferred:
                    time.sleep(0.5)
    finally:
        if owned is not None:
            owned.close()
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
