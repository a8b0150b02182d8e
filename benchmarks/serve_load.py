"""Load on ``ocrobin serve``: a bounded number of requests from concurrent clients, on 127.0.0.1 only.

Prints requests/s, p50/p95 latency, the status counts and the server's peak RSS (sampled from /proc over
the run), and whether memory stayed flat after the first requests. Exits 1 when any response is a 5xx
other than the pool's intended 503 (busy) and 504 (timeout), or a connection fails.

Examples:
    python benchmarks/serve_load.py                          # starts a server: default model, 300 requests, 8 clients
    python benchmarks/serve_load.py -m lstm2-seed --requests 1000 --size 800x600
    python benchmarks/serve_load.py --url http://127.0.0.1:8080/ --pid 12345   # a running server (and its RSS)
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pages import synthetic_page
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: Memory counts as flat when it grows by at most this much after warm-up (share of the warm RSS, or MiB).
FLAT_SHARE = 0.05
FLAT_MIB = 16.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process from /proc (None where it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class Run:
    """What the clients saw, and the server's memory over time."""

    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    rss: list[tuple[int, float]] = field(default_factory=list)  # (responses so far, MiB)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "ocrobin", "serve", "--host", "127.0.0.1", "--port", str(port), "-m", args.model,
           "--workers", str(args.workers), "--queue", str(args.queue), "--timeout", str(args.timeout)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"serve_load: the server did not start ({' '.join(cmd)})")


def client(url: str, body: bytes, query: str, todo: list[int], run: Run, total: int) -> None:
    """One client: a keep-alive connection, requests one after another until ``total`` have been sent."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/v1/binarize?" + query
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    while True:
        with run.lock:
            if todo[0] >= total:
                break
            todo[0] += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
            resp = conn.getresponse()
            resp.read()
            status: int | str = resp.status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        dt = time.perf_counter() - t0
        with run.lock:
            run.statuses[status] += 1
            run.latencies.append(dt)
            run.done += 1
    conn.close()


def sample(pid: int, run: Run, stop: threading.Event, every: float = 0.05) -> None:
    while not stop.is_set():
        mib = rss_mib(pid)
        if mib is not None:
            run.rss.append((run.done, mib))
        stop.wait(every)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running server on 127.0.0.1 (default: start one)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, to sample its RSS")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--size", default="600x400", help="synthetic page WIDTHxHEIGHT (default 600x400)")
    ap.add_argument("--format", default="png", choices=("png", "tif", "prob"))
    ap.add_argument("-m", "--model", default="default", help="model of a started server")
    ap.add_argument("--workers", type=int, default=2, help="--workers of a started server")
    ap.add_argument("--queue", type=int, default=8, help="--queue of a started server")
    ap.add_argument("--timeout", type=float, default=120.0, help="--timeout of a started server")
    args = ap.parse_args()

    proc = None
    if args.url:
        host = urllib.parse.urlsplit(args.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("serve_load: only a server on 127.0.0.1 is loaded")
        url, pid = args.url, args.pid
    else:
        proc, url = start_server(args)
        pid = proc.pid
    w, h = (int(v) for v in args.size.lower().split("x"))
    buf = io.BytesIO()
    Image.fromarray(synthetic_page(w, h)).save(buf, format="PNG", dpi=(300, 300))
    body = buf.getvalue()

    run = Run()
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(pid, run, stop), daemon=True) if pid else None
    if sampler:
        sampler.start()
    todo = [0]
    threads = [threading.Thread(target=client, args=(url, body, f"format={args.format}", todo, run, args.requests))
               for _ in range(args.clients)]
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        if sampler:
            sampler.join()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    lat = run.latencies
    print(f"{args.requests} requests, {args.clients} clients, {w}x{h} page ({len(body):,} bytes PNG), "
          f"format={args.format}" + ("" if args.url else f", model {args.model}, {args.workers} workers, "
                                     f"queue {args.queue}"))
    print(f"throughput   {args.requests / wall:.2f} requests/s ({wall:.1f} s)")
    print(f"latency      p50 {pct(lat, 0.5) * 1000:.0f} ms, p95 {pct(lat, 0.95) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms, mean {statistics.fmean(lat) * 1000:.0f} ms")
    print("statuses     " + ", ".join(f"{k}: {v}" for k, v in sorted(run.statuses.items(), key=str)))
    if run.rss:
        warm_at = max(1, min(args.requests // 10, 30))
        warm = [m for n, m in run.rss if n <= warm_at]
        later = [m for n, m in run.rss if n > warm_at]
        peak = max(m for _, m in run.rss)
        print(f"server RSS   peak {peak:.0f} MiB ({len(run.rss)} samples)")
        if warm and later:
            base, top = max(warm), max(later)
            flat = top - base <= max(FLAT_SHARE * base, FLAT_MIB)
            print(f"memory       {base:.0f} MiB after the first {warm_at} responses, at most {top:.0f} MiB after: "
                  f"{'flat' if flat else 'GROWING'} (growth {top - base:+.0f} MiB)")
    bad = {k: v for k, v in run.statuses.items()
           if not isinstance(k, int) or (k >= 500 and k not in (503, 504))}
    print(f"unexpected   {sum(bad.values())} responses ({', '.join(map(str, bad)) or 'none'})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
