"""`ocrobin binarize --engine ray --address` against a real two-node Ray cluster with token authentication.

The cluster is started as a user would (``ray start --head`` and ``ray start --address`` on loopback, each
node with its own temporary directory) and the client is the ``ocrobin`` command in a subprocess. Every
Ray process the fixture starts belongs to the sessions of its two ``ray start`` commands, and only those
processes are stopped at the end (``ray stop`` would stop every Ray process on the machine, including
those of other test runs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")
pytest.importorskip("ray.data", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")
psutil = pytest.importorskip("psutil", reason="psutil comes with ray")

from ocrobin import shards  # noqa: E402
from ocrobin.batch import read_report  # noqa: E402
from ocrobin.imageio import encode_png  # noqa: E402

from .conftest import text_page  # noqa: E402

pytestmark = pytest.mark.ray_cluster

BIN = Path(sys.executable).parent
N_SHARDS, PER_SHARD = 3, 3
CORRUPT = (1, "s1p1")  # shard number and key of the sample that is not an image
INVERTED = (2, 1)  # shard and sample number of the light-on-dark page
HEAD_CPUS, WORKER_CPUS = 2, 1
START_TIMEOUT = 180  # seconds for one `ray start` (a guard against a hang, not a figure)
RUN_TIMEOUT = 300  # seconds for one client run (likewise)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # the client's environment: HOME holds Ray's default token file, nothing else set
    token: str
    scratch: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _base_env(home: Path) -> dict[str, str]:
    """This environment without any Ray setting of the caller's, with its own HOME (and so token file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    return env


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> int:
    """Run ``ray start ARGS`` in a new session; returns the session id its Ray processes carry."""
    with open(log, "ab") as f:
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--disable-usage-stats", *args], env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        sid = proc.pid
        try:
            rc = proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    if rc != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text(errors='replace')[-3000:]}")
    return sid


def _stop(sids: set[int], tmp: Path) -> None:
    """Stop the processes of the given sessions or with ``tmp`` on their command line, and no others."""
    def ours() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                sid = os.getsid(proc.info["pid"])
            except OSError:
                continue
            if sid in sids or str(tmp) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = ours()
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)


def _wait_for_nodes(cluster: Cluster, n: int) -> None:
    """Wait until ``n`` nodes have joined (a node's ``ray start`` may return before the head lists it)."""
    script = ("import sys, time, ray\n"
              "ray.init(address=sys.argv[1], logging_level='error')\n"
              "end = time.monotonic() + 120\n"
              "while len([x for x in ray.nodes() if x['Alive']]) < int(sys.argv[2]) and time.monotonic() < end:\n"
              "    time.sleep(0.5)\n"
              "print(len([x for x in ray.nodes() if x['Alive']]))\n")
    env = dict(cluster.env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    out = subprocess.run([sys.executable, "-c", script, cluster.address, str(n)], env=env, capture_output=True,
                         text=True, timeout=START_TIMEOUT)
    assert out.stdout.strip() == str(n), f"{n} nodes expected:\n{out.stdout}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head node (2 CPUs) and a worker node (1 CPU) on loopback, token authentication on."""
    if not (BIN / "ray").exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    try:
        from ray._raylet import AuthenticationTokenLoader  # noqa: F401
    except ImportError:
        pytest.skip("this Ray has no token authentication")
    home = tmp_path_factory.mktemp("home")
    # Short, since Ray's socket paths under its temporary directory must stay below 108 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="ocrc-", dir="/tmp"))
    env = _base_env(home)
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True,
                   timeout=START_TIMEOUT)
    token = (home / ".ray" / "auth_token").read_text().strip()
    node_env = dict(env, RAY_AUTH_MODE="token")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    sids: set[int] = set()
    try:
        sids.add(_ray_start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", str(HEAD_CPUS), "--include-dashboard", "false",
                             "--temp-dir", str(tmp / "head")], node_env, tmp / "head.log"))
        sids.add(_ray_start(["--address", address, "--num-cpus", str(WORKER_CPUS),
                             "--temp-dir", str(tmp / "worker")], node_env, tmp / "worker.log"))
        c = Cluster(address, env, token, tmp)
        _wait_for_nodes(c, 2)
        yield c
    finally:
        _stop(sids, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _page(s: int, k: int) -> np.ndarray:
    """The upright page of sample ``k`` of shard ``s`` (dark text on light paper)."""
    return text_page(48 + 8 * k, 80, seed=10 * s + k)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small shards; one sample of shard 1 is not an image, one page of shard 2 is light on dark."""
    d = tmp_path_factory.mktemp("cluster-shards")
    for s in range(N_SHARDS):
        with shards.ShardSink(str(d / "in-%06d.tar"), maxcount=1000, start=s) as sink:
            for k in range(PER_SHARD):
                key = f"s{s}p{k}"
                if (s, key) == CORRUPT:
                    sink.write({"__key__": key, "gray.png": b"\x89PNG but not really"})
                else:
                    page = 255 - _page(s, k) if (s, k) == INVERTED else _page(s, k)
                    sink.write({"__key__": key, "gray.png": encode_png(page)})
    return d


def _binarize(cluster: Cluster, src: Path, out: Path, *extra: str, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    """``ocrobin binarize --engine ray --address`` over the three shards, as a separate client process.

    ``extra`` goes on the command line, so that further options (``--polarity``, ``--report``) can be
    checked on the cluster with the same runs.
    """
    exe = BIN / "ocrobin"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ocrobin.cli"]
    cmd += ["binarize", "--engine", "ray", "--address", cluster.address, "-m", "lstm2-seed", "--no-progress",
            "--stall-timeout", "60", "--shards", str(src / f"in-{{000000..{N_SHARDS - 1:06d}}}.tar"),
            "-o", str(out / "out-%06d.tar"), *extra]
    return subprocess.run(cmd, env=env or cluster.env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def _samples(path: Path) -> dict[str, dict[str, bytes]]:
    """The samples of one output shard by key, with their members (``bin.png``, ``error.txt``)."""
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")}
            for s in shards.iter_samples([str(path)])}


def _outputs(out: Path) -> dict[int, set[str]]:
    return {i: set(_samples(out / f"out-{i:06d}.tar")) for i in range(N_SHARDS) if (out / f"out-{i:06d}.tar").exists()}


def _local(src: Path, out: Path) -> dict[str, dict[str, bytes]]:
    """What the local engine (``ocrobin binarize --shards ... --polarity auto``) makes of one shard."""
    exe = BIN / "ocrobin"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ocrobin.cli"]
    cmd += ["binarize", "-m", "lstm2-seed", "--no-progress", "--threads", "1", "--workers", "1",
            "--polarity", "auto", "--shards", str(src), "-o", str(out / "local-%06d.tar")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    return _samples(out / "local-000000.tar")


def test_cluster_run_rerun_and_token(cluster: Cluster, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = tmp_path / "run.jsonl"
    # More workers than the 3 CPUs hold next to the shard readers: lowered with one line, no hang. The
    # token comes from ~/.ray/auth_token alone (no RAY_AUTH_MODE, no RAY_AUTH_TOKEN in the environment).
    first = _binarize(cluster, inputs, out, "--num-workers", "5", "--polarity", "auto", "--report", str(report))
    log = first.stderr
    assert first.returncode == 1, log[-3000:]  # 1: one sample failed
    assert "Traceback" not in log, log[-3000:]
    assert (f"ocrobin: 5 model workers requested, 2 started: the Ray cluster at {cluster.address} has "
            f"{HEAD_CPUS + WORKER_CPUS} CPUs, 1 per worker and 1 kept for the shard readers") in log.splitlines()
    outputs = _outputs(out)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    every = [f"s{s}p{k}" for s in range(N_SHARDS) for k in range(PER_SHARD)]
    assert sorted(outputs) == list(range(N_SHARDS))
    assert sorted(k for keys in outputs.values() for k in keys) == sorted(every), "every input key exactly once"
    assert all(k.startswith(f"s{i}p") for i, keys in outputs.items() for k in keys)
    assert len(errors) == 1 and errors[0]["key"] == CORRUPT[1]
    assert errors[0]["shard"] == str(inputs / f"in-{CORRUPT[0]:06d}.tar")
    assert "not an image" in errors[0]["reason"]
    failed = _samples(out / f"out-{CORRUPT[0]:06d}.tar")[CORRUPT[1]]
    assert failed == {"error.txt": errors[0]["reason"].encode()}, "the failed sample's reason in its output shard"
    assert "done 8, skipped 0, failed 1" in log

    # The light-on-dark page comes out as dark text on white, as the local engine makes it.
    shard, inverted = INVERTED[0], "s{}p{}".format(*INVERTED)
    got = _samples(out / f"out-{shard:06d}.tar")
    assert got == _local(inputs / f"in-{shard:06d}.tar", tmp_path), "the engines wrote different bytes"
    ink = np.asarray(Image.open(io.BytesIO(got[inverted]["bin.png"]))) == 0
    strokes = _page(*INVERTED) < 128
    assert ink[strokes].mean() > 0.5 and (~ink[~strokes]).mean() > 0.9, "text black, ground white"

    # The report: one row per input key, as the results came back.
    rows = read_report(report)
    assert sorted(r["key"] for r in rows) == sorted(every)
    by = {r["key"]: r for r in rows}
    assert {k: r["status"] for k, r in by.items() if r["status"] != "done"} == {CORRUPT[1]: "failed"}
    assert by[CORRUPT[1]]["error"] == errors[0]["reason"]
    assert by[inverted]["polarity"] == "inverted" and "inverted" in by[inverted]["flags"]
    assert all(r["output"] == f"{out / f'out-{int(k[1]):06d}.tar'}:{k}" for k, r in by.items())

    # A rerun, the token now only in RAY_AUTH_TOKEN: finished shards are skipped, the missing one redone.
    kept = {i: (out / f"out-{i:06d}.tar").stat().st_mtime_ns for i in (0, 2)}
    (out / f"out-{CORRUPT[0]:06d}.tar").unlink()
    bare = tmp_path / "bare-home"
    bare.mkdir()
    again = _binarize(cluster, inputs, out, "--report", str(report),
                      env=dict(cluster.env, HOME=str(bare), RAY_AUTH_TOKEN=cluster.token))
    assert again.returncode == 1, again.stderr[-3000:]
    assert f"done {PER_SHARD - 1}, skipped {2 * PER_SHARD}, failed 1" in again.stderr
    assert {i: (out / f"out-{i:06d}.tar").stat().st_mtime_ns for i in (0, 2)} == kept
    assert _outputs(out) == outputs
    assert [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()] == errors
    rerun = read_report(report)[len(rows):]
    assert sorted((r["key"], r["status"]) for r in rerun) == sorted(
        [(f"s{s}p{k}", "skipped") for s in (0, 2) for k in range(PER_SHARD)]
        + [(f"s{CORRUPT[0]}p{k}", "failed" if f"s{CORRUPT[0]}p{k}" == CORRUPT[1] else "done")
           for k in range(PER_SHARD)])


def test_cluster_refuses_missing_or_wrong_token(cluster: Cluster, inputs: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-home"
    bare.mkdir()
    cases = {"missing": (dict(cluster.env, HOME=str(bare)), "it requires token authentication"),
             "wrong": (dict(cluster.env, HOME=str(bare), RAY_AUTH_TOKEN="not-the-token"),
                       "it refused this client's token")}
    for name, (env, reason) in cases.items():
        run = _binarize(cluster, inputs, tmp_path / name, env=env)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2, run.stderr[-3000:]
        assert lines == [f"ocrobin binarize: error: cannot connect to the Ray cluster at {cluster.address}: "
                         f"{reason}; set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on the head "
                         "node) or copy that token into ~/.ray/auth_token"], run.stderr[-3000:]
        assert not (tmp_path / name / "out-000000.tar").exists()
