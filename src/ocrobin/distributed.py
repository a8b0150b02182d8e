"""Binarize webdataset shards on a Ray cluster (extra ``ocrobin[ray]``), or on one machine with Ray.

The pipeline is Ray Data's: a task per input shard reads its samples (``flat_map``), a pool of actors
runs the model (``map_batches`` with a callable class, so each worker loads the model once), and the
driver collects the results and writes output shard *i* for input shard *i* as soon as all its samples
are back. Each page takes the same trip as in the local engine (:func:`ocrobin.batch.run_sample`), so
both engines write the same bytes and the same report rows for the same page.

An output shard gets its final name only when every input sample has a result: its binary page or, for
a sample that failed, an ``error.txt`` member under its key. A shard that cannot be read to the end gets
no output shard (a rerun redoes it), and the temporary file of a run that died is removed and its shard
redone. Failures are also listed, one JSON object per line, in an errors file with their shard, key and
reason; the errors of a shard are written before the shard itself, and entries of shards that are redone
are dropped first, so the file always matches the finished output. With a run report the driver appends
one row per page as its result comes back (``skipped`` rows for the pages of finished shards).

Workers receive the loaded model from the driver, so the model file need only exist where the driver
runs; input shards must be readable by every node (a shared file system or URLs), and outputs are
written by the driver.

Joining a cluster (``address``) turns Ray's token authentication on for the client when the cluster
asks for a token and one is found (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``),
since Ray itself does so only for ``auto``; a cluster that cannot be reached or refuses the client is one
:class:`ClusterError` line, with Ray's own retry messages kept off the terminal. The number of model
workers is fitted to the cluster's CPUs with room for the shard readers (Ray Data would otherwise wait
forever for a reader CPU), and a watchdog stops a run that makes no progress, naming the stuck stage.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import shards
from .batch import ERROR_KEY, Options, Report, Summary, error_message, plan_shards, run_sample
from .batch.shards import SampleTask, _keys_of, _leftovers, read_error_text, sample_name
from .exceptions import ClusterError, ShardError, UsageError
from .imageio import atomic_path
from .infer import DEFAULT_OVERLAP, Binarizer, load
from .modelfile import ModelInfo
from .paths import check_no_clash

#: Name of the errors file written next to the output shards unless one is named.
ERRORS_NAME = "errors.jsonl"

#: Seconds without any progress after which a run stops (``stall_timeout``; 0 or None: never).
DEFAULT_STALL_TIMEOUT = 600.0

#: Ray CPUs never given to model workers, so that shard readers can always run.
READER_CPUS = 1

#: Ray CPUs of one shard reader (a task per input shard; mostly waiting for I/O).
READER_TASK_CPUS = 0.5

#: Seconds to wait for a TCP connection to the cluster address before calling it unreachable.
CONNECT_TIMEOUT = 5.0

#: Attempts (about a second each) Ray makes to reach the cluster's GCS, unless the user set them
#: (``RAY_gcs_server_port_wait_time_s``); Ray's default of 20 doubles the wait for a refused token.
GCS_ATTEMPTS = 10

_TOKEN_HELP = ("set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on the head node) "
               "or copy that token into ~/.ray/auth_token")

# Row kinds flowing through the pipeline (all rows have the same columns so Ray can stack them).
_PAGE, _DONE, _ERROR, _END = "page", "done", "error", "end"


def _row(shard: int, seq: int, kind: str, key: str = "", ext: str = "", data: bytes = b"", prob: bytes = b"",
         reason: str = "", info: str = "", count: int = 0, readable: bool = True) -> dict[str, Any]:
    """One pipeline row; ``info`` is the page's report row as JSON, ``key`` is empty for the shard itself."""
    return {"shard": shard, "seq": seq, "kind": kind, "key": key, "ext": ext, "data": data, "prob": prob,
            "reason": reason, "info": info, "count": count, "readable": readable}


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


class Progress:
    """Counters that shard readers and model workers bump, so the driver can tell which stage is stuck.

    Runs as a Ray actor without CPUs (so it starts even when the workers take every CPU); callers send
    :meth:`add` without waiting for it.
    """

    def __init__(self) -> None:
        self.counts = {"read": 0, "shards": 0, "ready": 0, "binarized": 0}

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` more rows read or binarized, shards read to the end, or workers started."""
        self.counts[name] += n

    def get(self) -> dict[str, int]:
        """The counters so far."""
        return dict(self.counts)


def _tell(progress: Any, name: str, n: int = 1) -> None:
    """Bump a :class:`Progress` counter (fire and forget); nothing without a progress actor."""
    if progress is not None and n:
        progress.add.remote(name, n)


def read_shard(item: dict[str, Any], input_key: str = shards.GRAY_KEY,
               progress: Any = None) -> Iterator[dict[str, Any]]:
    """Rows for one input shard: one per sample (its input image bytes, or why it has none), then an end row.

    A shard that is missing or cannot be read to the end gives one more error row for the shard itself
    (empty key), and its end row says it is not readable: it gets no output shard, so a rerun redoes it.
    The end row carries how many rows came before it, so the driver knows when the shard is complete.
    ``progress`` (a :class:`Progress` actor handle) counts the rows for the watchdog.
    """
    for row in _shard_rows(item, input_key):
        _tell(progress, "read")
        if row["kind"] == _END:
            _tell(progress, "shards")
        yield row


def _shard_rows(item: dict[str, Any], input_key: str) -> Iterator[dict[str, Any]]:
    index, url = int(item["shard"]), str(item["url"])
    if _is_local(url) and not os.path.isfile(url):
        yield _row(index, 0, _ERROR, reason=f"{url}: shard not found")
        yield _row(index, 1, _END, count=1, readable=False)
        return
    problems: list[Exception] = []

    def on_error(exn: Exception) -> bool:
        problems.append(exn)
        return True

    seq = 0
    for sample in shards.iter_samples([url], handler=on_error):
        key = str(sample.get("__key__", ""))
        try:
            found = shards.image_key(sample, input_key)
        except ShardError as e:  # the message the local engine gives (only the page's bytes travel on)
            yield _row(index, seq, _ERROR, key=key, reason=error_message(sample_name(url, sample), e))
        else:
            yield _row(index, seq, _PAGE, key=key, ext=found, data=sample[found])
        seq += 1
    if problems:  # any read error means samples may be missing: the shard is not complete
        yield _row(index, seq, _ERROR, reason=f"{url}: {read_error_text(url, problems[0])}")  # as the local engine
        seq += 1
    yield _row(index, seq, _END, count=seq, readable=not problems)


class BinarizeActor:
    """Ray Data callable class: loads the model once per worker, binarizes batches of page rows.

    Args:
        info: the loaded model, shipped from the driver.
        url_of: input shard URL by shard number (for error messages).
        opts: threshold, polarity and ``prob`` of every page (:class:`ocrobin.batch.Options`).
        threads: torch threads per worker.
        tile, overlap: tiling of large pages, as in :class:`ocrobin.infer.Binarizer`.
        progress: a :class:`Progress` actor handle told when the worker is up and what it has done.
    """

    def __init__(self, info: ModelInfo, url_of: dict[int, str], opts: Options | None = None, threads: int = 1,
                 tile: int | None = None, overlap: int = DEFAULT_OVERLAP, progress: Any = None) -> None:
        from .runtime import release_freed_memory

        release_freed_memory()
        self.opts = opts or Options()
        self.binarizer = Binarizer(info, threads=threads, tile=tile, overlap=overlap, polarity=self.opts.polarity)
        self.url_of = url_of
        self.progress = progress
        _tell(progress, "ready")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        out = _columns([self._one({k: v[i] for k, v in batch.items()}) for i in range(n)])
        _tell(self.progress, "binarized", n)
        return out

    def _one(self, r: dict[str, Any]) -> dict[str, Any]:
        shard, seq, kind = int(r["shard"]), int(r["seq"]), str(r["kind"])
        if kind != _PAGE:
            return _row(shard, seq, kind, key=str(r["key"]), reason=str(r["reason"]), count=int(r["count"]),
                        readable=bool(r["readable"]))
        key, found = str(r["key"]), str(r["ext"])
        url = self.url_of.get(shard, "?")
        sample = {"__key__": key, "__url__": url, found: bytes(r["data"])}
        try:
            out, info, err = run_sample(self.binarizer, SampleTask(sample, found, self.opts))
        except Exception as e:  # noqa: BLE001 - any failure of one page is recorded, not fatal to the run
            msg = error_message(sample_name(url, sample), e)
            return _row(shard, seq, _ERROR, key=key, reason=msg)
        if err is not None:
            return _row(shard, seq, _ERROR, key=key, reason=str(info["error"]), info=json.dumps(info))
        return _row(shard, seq, _DONE, key=key, data=out[shards.BIN_KEY], prob=out.get(shards.PROB_KEY, b""),
                    info=json.dumps(info))


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows to a numpy batch: text and bytes as object arrays, numbers and flags typed."""
    cols: dict[str, np.ndarray] = {}
    for k, v in _row(0, 0, _END).items():
        values = [r[k] for r in rows]
        dtype = object if isinstance(v, (str, bytes)) else (bool if isinstance(v, bool) else np.int64)
        cols[k] = np.array(values, dtype=dtype)
    return cols


@dataclass
class _Shard:
    """What the driver has received of one input shard.

    Attributes:
        samples: (sequence number, output sample) of every sample back so far: pages and error members.
        errors: (sequence number, key, reason) of the samples that failed.
        problems: why the shard itself could not be read to the end.
        redo: a dead run's temporary file of this output was found (and removed).
    """

    index: int
    url: str
    out: str
    samples: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seen: int = 0
    expected: int | None = None
    readable: bool = True
    redo: bool = False
    #: pages done and their pixels, and the report rows: counted once the shard is written (an unfinished
    #: shard has no pages), as the local engine does
    done: int = 0
    pixels: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


def _keep_errors(path: Path, redo: set[str]) -> None:
    """Drop the errors file's entries of shards about to be redone (other lines are kept as they are)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            shard = json.loads(line).get("shard")
        except (json.JSONDecodeError, AttributeError):
            shard = None
        if shard not in redo and line.strip():
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _token_available() -> bool:
    """Whether Ray finds an authentication token here (``RAY_AUTH_TOKEN``, its path, ``~/.ray/auth_token``)."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return False
    return bool(AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True))


def _use_token_auth() -> None:
    """Turn on Ray's token authentication for this process (and the processes it starts), as Ray does."""
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray caches its config; make this process see the new mode


def _refusal(address: str) -> Exception | None:
    """The authentication error the cluster's GCS answers this client with, or None if it lets it in.

    A first request to the GCS, as ``ray.init`` makes; it fails within milliseconds where ``ray.init``
    retries for many seconds. Anything but an authentication error is left for ``ray.init`` to report.
    """
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication
        return None
    try:
        GcsClient(address=address)
    except AuthenticationError as e:
        return e
    except Exception:  # noqa: BLE001 - reported by ray.init with more context
        return None
    return None


def _authenticate(address: str) -> bool:
    """Settle token authentication with the cluster before joining it; True if the client uses a token.

    Ray turns the client's token authentication on by itself only for ``address="auto"``; with an
    explicit address the client stays in ``disabled`` mode and a token cluster refuses it, however the
    token was provided. Turning it on towards a cluster without authentication breaks that cluster's
    workers talking back to us, so it is turned on only when the cluster asks for a token. An explicit
    ``RAY_AUTH_MODE`` is left as the user set it.

    Raises:
        ClusterError: the cluster refuses the client (no token, or a wrong one).
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    token_mode = (mode or "").lower() == "token"
    hint = ""
    if token_mode and not _token_available():  # Ray's client aborts the process on a request without one
        reason = "RAY_AUTH_MODE=token but no token was found"
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {reason}; {_TOKEN_HELP}")
    refused = _refusal(address)
    if refused is None:
        return token_mode
    if mode is None and _token_available():
        _use_token_auth()
        if _refusal(address) is None:
            return True
        reason = "it refused this client's token"
    elif token_mode:
        reason = "it refused this client's token"
    else:
        reason = "it requires token authentication"
        hint = f" (and unset RAY_AUTH_MODE={mode})" if mode is not None else ""
    raise ClusterError(f"cannot connect to the Ray cluster at {address}: {reason}; {_TOKEN_HELP}{hint}")


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for ``auto`` and the like."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe(address: str) -> None:
    """Fail fast on an address nobody listens at (Ray would retry for many minutes).

    Raises:
        ClusterError: nothing accepts a TCP connection at the address.
    """
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, socket.timeout):
            reason = f"no answer in {CONNECT_TIMEOUT:g} s"
        raise ClusterError(f"cannot reach a Ray cluster at {address} ({reason}); start it with "
                           "`ray start --head` or check the address (`ray status` on the head node)") from e


@contextmanager
def _quiet_ray() -> Iterator[IO[str]]:
    """Keep Ray's messages off the terminal while connecting; yields the file they go to.

    Ray's C++ client writes its retry warnings straight to file descriptor 2, so the descriptor itself
    is redirected (Python loggers writing to stderr follow it).
    """
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as scratch:
        os.dup2(scratch.fileno(), 2)
        ray_logger.setLevel(logging.CRITICAL)
        try:
            yield scratch
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            ray_logger.setLevel(level)


def _connect(address: str | None, cpus: int) -> bool:
    """Start or join Ray; True when this call started or joined it (and so must shut it down).

    A local instance gets ``cpus`` logical CPUs (the model workers' plus room for the shard readers).

    Raises:
        ClusterError: the cluster cannot be reached, or it refuses this client (token authentication).
    """
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if not address:
        ray.init(num_cpus=cpus, **common)
        return True
    _probe(address)
    wait_var = "RAY_gcs_server_port_wait_time_s"
    user_wait = os.environ.get(wait_var)
    if user_wait is None:
        os.environ[wait_var] = str(GCS_ATTEMPTS)
    try:
        with _quiet_ray() as scratch:
            token = _authenticate(address) if "://" not in address and _host_port(address) else False
            try:
                ray.init(address=address, **common)
            except Exception as e:  # noqa: BLE001 - every way of failing to connect becomes one line
                scratch.seek(0)
                raise _connect_error(address, e, scratch.read(), token) from None
    finally:
        if user_wait is None:
            os.environ.pop(wait_var, None)
    return True


def _connect_error(address: str, exn: BaseException, logged: str, token: bool) -> ClusterError:
    """The one-line error for a failed ``ray.init(address=...)``, from its exception chain and Ray's log."""
    chain, e = [], exn
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(f"{type(c).__name__}: {c}" for c in chain) + logged
    if "no authentication token was found" in text:
        return ClusterError(f"cannot connect to the Ray cluster at {address}: RAY_AUTH_MODE=token but no "
                            f"token was found; {_TOKEN_HELP}")
    if "InvalidAuthToken" in text or "Unauthenticated" in text or "AuthenticationError" in text:
        what = "refused this client's token" if token else "requires token authentication"
        return ClusterError(f"cannot connect to the Ray cluster at {address}: it {what}; {_TOKEN_HELP}")
    last = str(chain[-1]).strip().splitlines()
    return ClusterError(f"cannot connect to the Ray cluster at {address}: {type(exn).__name__}: "
                        f"{last[-1] if last else exn}")


def _plan_workers(requested: int | None, threads: int, where: str, notice: Callable[[str], None]) -> int:
    """The number of model workers the Ray instance can run next to the shard readers.

    Each worker takes ``threads`` CPUs on one node and :data:`READER_CPUS` stay free for the readers;
    without that room Ray Data starts the workers and then waits forever for a reader. A request for
    more is lowered, with one line to ``notice``; no request gets as many as fit.

    Raises:
        ClusterError: not even one worker fits.
    """
    import ray

    cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    total = sum(cpus)
    fit = min(sum(int(c // threads) for c in cpus), int((total - READER_CPUS) // threads))
    if fit < 1:
        raise ClusterError(f"{where} has {total:g} CPUs: a model worker needs {threads} on one node and "
                           f"{READER_CPUS} more is kept for the shard readers; give Ray more CPUs "
                           "(ray start --num-cpus N) or fewer --threads")
    if requested is None:
        return fit
    if requested > fit:
        notice(f"{requested} model workers requested, {fit} started: {where} has {total:g} CPUs, "
               f"{threads} per worker and {READER_CPUS} kept for the shard readers")
        return fit
    return requested


@dataclass
class _State:
    """What the result thread has done, for the watchdog in the calling thread."""

    stage: str = ""
    received: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)


def _stuck_stage(counts: dict[str, int] | None, state: _State, shards_total: int, workers: int) -> str:
    """Name the pipeline stage a stalled run waits in, from the progress counters (None: none yet)."""
    if state.stage:
        return state.stage
    if not counts or counts["ready"] == 0:
        return f"waiting for the model workers to start (0 of {workers} running)"
    if counts["binarized"] < counts["read"]:
        return f"binarizing ({counts['read'] - counts['binarized']} pages at {workers} model workers)"
    if counts["shards"] < shards_total:
        return f"reading shards ({counts['shards']} of {shards_total} read to the end)"
    return "passing results to the driver"


def _cpu_note() -> str:
    """``, N of M CPUs free`` for a stall message (empty when Ray cannot say)."""
    import ray

    try:
        free = float(ray.available_resources().get("CPU", 0.0))
        total = float(ray.cluster_resources().get("CPU", 0.0))
    except Exception:  # noqa: BLE001 - only a hint in an error message
        return ""
    return f"; {free:g} of {total:g} CPUs free"


def _watch(thread: threading.Thread, state: _State, progress: Any, stall_timeout: float | None,
           shards_total: int, workers: int) -> None:
    """Wait for the result thread; stop when neither it nor the workers made progress for a while.

    Raises:
        ClusterError: no progress for ``stall_timeout`` seconds (the message names the stuck stage).
    """
    import ray

    poll = max(0.2, min(5.0, (stall_timeout or 50.0) / 10))
    counts: dict[str, int] | None = None
    seen: tuple[Any, ...] | None = None
    last = time.monotonic()
    while thread.is_alive():
        thread.join(poll)
        if not thread.is_alive():
            break
        try:
            counts = ray.get(progress.get.remote(), timeout=poll)
        except Exception:  # noqa: BLE001 - a progress actor that does not answer is no progress
            pass
        now = time.monotonic()
        signature = (state.stage, state.received, tuple(sorted(counts.items())) if counts else None)
        if signature != seen:
            seen, last = signature, now
        elif stall_timeout and now - last >= stall_timeout:
            state.stop.set()
            stage = _stuck_stage(counts, state, shards_total, workers)
            raise ClusterError(f"no progress for {stall_timeout:g} s while {stage}{_cpu_note()}; "
                               "stopped (see --stall-timeout)")
    if state.error is not None:
        raise state.error


def _stderr_notice(line: str) -> None:
    print(f"ocrobin: {line}", file=sys.stderr)


def binarize_shards_ray(
    model: Any,
    inputs: list[str],
    output_pattern: str,
    *,
    input_key: str = shards.GRAY_KEY,
    threshold: float = 0.5,
    prob: bool = False,
    invert: bool = False,
    polarity: str | None = None,
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    errors_path: str | os.PathLike[str] | None = None,
    report: Report | str | os.PathLike[str] | None = None,
    progress: bool = True,
    threads: int = 1,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    notice: Callable[[str], None] | None = None,
) -> Summary:
    """Binarize webdataset shards with Ray Data; input shard *i* becomes ``output_pattern % i``.

    Args:
        model: anything :func:`ocrobin.infer.load` takes; loaded once here and shipped to the workers.
        inputs: shard paths or brace patterns (``in-{000000..000999}.tar``).
        output_pattern: output shard name with one integer field (``out-%06d.tar``).
        input_key: sample key of the input page (other image extensions of its stem are accepted).
        threshold: ink threshold on the probability.
        prob: also store the 8-bit ink probability (``prob.png``).
        invert: same as ``polarity="inverted"``.
        polarity: ``auto`` (the default: light-on-dark pages and regions are found and binarized as text,
            output text always black), ``normal`` or ``inverted``; see :mod:`ocrobin.polarity`.
        address: Ray cluster to join (``host:6379``, ``auto`` or ``ray://host:10001``); None uses
            ``RAY_ADDRESS`` if set, else starts a local Ray instance (unless this process has one already).
            Token authentication is turned on for the client when a token is available.
        num_workers: model workers (actors); None: one per CPU locally, as many as fit on a cluster. On a
            cluster or an existing instance, a number that does not fit next to the shard readers
            (:data:`READER_CPUS`) is lowered, with a line to ``notice``.
        batch_size: pages handed to a worker at once (bounds the memory in flight per worker).
        overwrite: redo output shards that exist (default: skip them).
        errors_path: JSON-lines file of failed samples (default: ``errors.jsonl`` beside the outputs).
        report: run report (a :class:`ocrobin.batch.Report`, or a ``.jsonl`` / ``.csv`` path appended to):
            one row per page as its result comes back, as the local engine writes them.
        progress: show a progress bar of pages.
        threads: torch threads per worker (each worker reserves as many Ray CPUs).
        tile: tile side of large pages (None: automatic, 0: never), as in :class:`ocrobin.infer.Binarizer`.
        overlap: context pixels around each tile.
        stall_timeout: stop after this many seconds without progress (no row read, binarized, received
            or written); 0 or None: wait forever.
        notice: where the line about lowered workers goes (default: stderr).

    Returns:
        the counters of the run; ``skipped`` counts the samples of output shards that were skipped,
        ``redone`` those of shards whose temporary file a dead run had left.

    Raises:
        UsageError: no shards, a pattern that does not number the shards, an output, errors file or report
            that is an input shard, an unknown polarity or threshold, or Ray is not installed.
        ModelError: the model cannot be loaded.
        ClusterError: the cluster cannot be reached or refuses the client, has no room for one worker, or
            the run stalled.
    """
    try:
        import ray
    except ImportError as e:
        raise UsageError("the ray engine needs the ray extra: pip install 'ocrobin[ray]'") from e
    urls, outs = plan_shards(inputs, output_pattern)
    if batch_size < 1:
        raise UsageError("batch size must be at least 1")
    if num_workers is not None and num_workers < 1:
        raise UsageError("number of workers must be at least 1")
    if stall_timeout is not None and stall_timeout < 0:
        raise UsageError("stall timeout must be 0 (never) or more seconds")
    opts = Options(prob=prob, threshold=threshold, polarity="inverted" if invert else (polarity or "auto"),
                   overwrite=overwrite)
    errors_file = Path(errors_path) if errors_path else Path(output_pattern).parent / ERRORS_NAME
    check_no_clash(urls, [errors_file], "errors file")
    if report is not None and not isinstance(report, Report):
        check_no_clash(urls, [report], "report")  # before opening it: rows are appended to the file
        with Report(report) as opened:  # the same run with the report open, closed however it ends
            return binarize_shards_ray(
                model, inputs, output_pattern, input_key=input_key, threshold=threshold, prob=prob,
                polarity=opts.polarity, address=address, num_workers=num_workers, batch_size=batch_size,
                overwrite=overwrite, errors_path=errors_file, report=opened, progress=progress, threads=threads,
                tile=tile, overlap=overlap, stall_timeout=stall_timeout, notice=notice)
    if report is not None:
        check_no_clash(urls, [report.path], "report")
    summary = Summary()
    todo: dict[int, _Shard] = {}
    for i, (url, out) in enumerate(zip(urls, outs, strict=True)):
        if not overwrite and os.path.exists(out):
            keys = _keys_of(out)
            summary.skipped += len(keys)
            if report is not None:
                for k in keys:
                    report.row(input=url, key=k, output=f"{out}:{k}", status="skipped")
        else:
            todo[i] = _Shard(i, url, out)
    if not todo:
        return summary
    info = load(model)
    info = ModelInfo(info.model.cpu().eval(), dict(info.meta), info.path)  # without training state
    errors_file.parent.mkdir(parents=True, exist_ok=True)
    _keep_errors(errors_file, {s.url for s in todo.values()})

    address = address or os.environ.get("RAY_ADDRESS") or None
    threads = max(1, int(threads))
    t0 = time.perf_counter()
    bar = None
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    started = False
    state = _State()
    thread: threading.Thread | None = None
    ds = None
    try:
        local_workers = num_workers or max(1, (os.cpu_count() or 1) // threads)
        started = _connect(address, local_workers * threads + READER_CPUS)
        where = f"the Ray cluster at {address}" if address else "the Ray instance"
        workers = _plan_workers(num_workers or (local_workers if started and not address else None), threads,
                                where, notice or _stderr_notice)
        for s in todo.values():  # temporary files of runs that died: removed, their shards redone
            for tmp in _leftovers(s.out):
                tmp.unlink(missing_ok=True)
                s.redo = True
        ctx.enable_progress_bars = False  # one bar of our own instead of one per operator
        tracker = ray.remote(num_cpus=0)(Progress).remote()
        items = [{"shard": s.index, "url": s.url} for s in todo.values()]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.flat_map(read_shard, fn_kwargs={"input_key": input_key, "progress": tracker},
                         num_cpus=READER_TASK_CPUS)
        ds = ds.map_batches(
            BinarizeActor,
            fn_constructor_kwargs={"info": info, "url_of": {s.index: s.url for s in todo.values()}, "opts": opts,
                                   "threads": threads, "tile": tile, "overlap": overlap, "progress": tracker},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,
        )
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="page", dynamic_ncols=True, desc="binarize (ray)")
        thread = threading.Thread(target=_collect,
                                  args=(ds, todo, output_pattern, errors_file, summary, state, bar, report),
                                  name="ocrobin-ray-results", daemon=True)
        thread.start()
        _watch(thread, state, tracker, stall_timeout, len(todo), workers)
    except BaseException as e:
        state.stop.set()
        if ds is not None and thread is not None and thread.is_alive():  # stalled or interrupted
            _stop_pipeline(ds, e)
            thread.join(10.0)
        raise
    finally:
        state.stop.set()
        ctx.enable_progress_bars = bars
        if bar is not None:
            bar.close()
        _release(thread, started)
    summary.seconds = time.perf_counter() - t0
    return summary


def _stop_pipeline(ds: Any, reason: BaseException) -> None:
    """Stop Ray Data's execution of ``ds`` (its tasks and actors), so that nothing waits on it any more.

    Ray Data has no public call for this while a consumer waits for the first rows; its executor is a
    thread named after the dataset, whose ``shutdown`` ends the run and the wait. Best effort.
    """
    try:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor
    except ImportError:
        return
    prefix = f"StreamingExecutor-{ds.get_dataset_id().rsplit('_', 1)[0]}_"  # any run index of this dataset
    for t in threading.enumerate():
        if isinstance(t, StreamingExecutor) and t.name.startswith(prefix):
            try:
                t.shutdown(force=True, exception=reason)
            except Exception:  # noqa: BLE001 - Ray is shut down next anyway
                pass


def _release(thread: threading.Thread | None, started: bool) -> None:
    """Shut Ray down if this run started it, also while the result thread still waits (a stall, Ctrl-C).

    A waiting Ray Data iterator that finds Ray gone calls Ray again, and Ray's auto-connect would then
    start a new local instance in this process (whoever shuts Ray down, now or later). So while the
    thread lives, auto-connect is off and Ray Data's complaints about the vanished cluster are muted;
    both are restored once the thread has ended.
    """
    import ray

    if thread is None or not thread.is_alive():
        if started:
            ray.shutdown()
        return
    try:
        from ray._private import auto_init_hook
    except ImportError:  # a Ray without auto-connect
        auto_init_hook = None
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    auto = getattr(auto_init_hook, "enable_auto_connect", None)
    if auto is not None:
        auto_init_hook.enable_auto_connect = False
    data_logger.setLevel(logging.CRITICAL)

    def restore() -> None:
        thread.join()
        data_logger.setLevel(level)
        if auto is not None:
            auto_init_hook.enable_auto_connect = auto

    threading.Thread(target=restore, name="ocrobin-ray-restore", daemon=True).start()
    if started:
        ray.shutdown()


def _collect(ds: Any, todo: dict[int, _Shard], output_pattern: str, errors_file: Path, summary: Summary,
             state: _State, bar: Any, report: Report | None = None) -> None:
    """Take the result rows as they come and write each shard once complete (the result thread's work).

    Stops at the next row once ``state.stop`` is set; an exception is kept in ``state.error``.
    """
    finished = 0
    try:
        for row in ds.iter_rows():
            if state.stop.is_set():
                return
            state.received += 1
            shard = todo[int(row["shard"])]
            if str(row["kind"]) == _END:
                shard.expected = int(row["count"])
                shard.readable = bool(row["readable"])
            else:
                shard.seen += 1
                _receive(shard, row, summary)
                if bar is not None:
                    bar.update(1)
            if shard.expected is not None and shard.seen == shard.expected:
                if state.stop.is_set():
                    return
                state.stage = f"writing {shard.out}"
                _finish_shard(shard, output_pattern, errors_file, summary, report)
                state.stage = ""
                finished += 1
                if bar is not None:
                    bar.set_postfix(failed=summary.failed, shards=f"{finished}/{len(todo)}")
    except BaseException as e:  # noqa: BLE001 - handed to the calling thread, which raises it
        if not state.stop.is_set():
            state.error = e


def _receive(shard: _Shard, row: dict[str, Any], summary: Summary) -> None:
    """Keep one sample's result and report row for its output shard; count a failure at once."""
    seq, key, reason = int(row["seq"]), str(row["key"]), str(row["reason"])
    if not key:  # the shard itself could not be read: reported when the shard is complete
        shard.problems.append(reason)
        return
    info: dict[str, Any] = (json.loads(str(row["info"])) if row["info"]
                            else {"input": shard.url, "key": key, "status": "failed", "error": reason})
    info["output"] = f"{shard.out}:{key}"
    if str(row["kind"]) == _DONE:
        sample = {"__key__": key, shards.BIN_KEY: bytes(row["data"])}
        if row["prob"]:
            sample[shards.PROB_KEY] = bytes(row["prob"])
        shard.done += 1
        shard.pixels += int(info.get("width") or 0) * int(info.get("height") or 0)
    else:
        sample = {"__key__": key, ERROR_KEY: reason.encode()}
        shard.errors.append((seq, key, reason))
        summary.failed += 1
        summary.errors.append((f"{shard.url}:{key}", reason))
    shard.samples.append((seq, sample))
    shard.rows.append(info)


def _finish_shard(shard: _Shard, pattern: str, errors_file: Path, summary: Summary, report: Report | None) -> None:
    """Record a complete shard: its errors first, then its output shard (atomically) if it was read to the end."""
    if shard.problems:
        shard.readable = False
    # one failure per unreadable shard, as in the local engine
    gone = [f"{p}; {shard.out} not written (a rerun redoes it)" for p in shard.problems[:1]]
    if not shard.readable and not gone:
        gone = [f"{shard.url}: could not be read to the end; {shard.out} not written (a rerun redoes it)"]
    rows = [{"shard": shard.url, "key": key, "reason": reason} for _, key, reason in sorted(shard.errors)]
    rows += [{"shard": shard.url, "key": None, "reason": reason} for reason in gone]
    if rows:
        with open(errors_file, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    for reason in gone:
        summary.failed += 1
        summary.errors.append((shard.url, reason))
        if report is not None:
            report.row(input=shard.url, output=shard.out, status="failed", error=reason)
    if shard.readable:
        with shards.ShardSink(pattern, maxcount=1 << 62, start=shard.index) as sink:
            for _, sample in sorted(shard.samples, key=lambda s: s[0]):
                sink.write(sample)
            sink.open()  # an empty input shard still gets its (empty) output shard
        summary.done += shard.done
        summary.pixels += shard.pixels
        if report is not None:
            for info in shard.rows:
                report.row(**info)
        if shard.redo:
            summary.redone += len(shard.samples)
    shard.samples.clear()
    shard.rows.clear()
