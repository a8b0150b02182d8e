"""Claims: several runs on one output folder (two terminals, several machines) split the work.

Before a run binarizes a page (or a shard) it creates a claim file for its output in
``OUTDIR/.ocrobin-claims/`` with ``O_EXCL``, so exactly one run gets it; the others go on with the next
one. A claim names its host and process and is touched every few seconds while the run works on it. A
claim whose process is gone (same host) or that has not been touched for ``stale_after`` seconds (another
host) is taken over, so nothing is lost when a run is killed. When the outputs are written the claim is
removed; a run that has finished its own list waits for the claims of the others and takes over those
that go stale. A run that ends also removes the stale claims it finds (a killed run's claim on a page it
had already written is otherwise never taken over), so a finished folder holds outputs only.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .inputs import CLAIMS_DIR

#: Seconds without a touch after which another host's claim is taken over.
STALE_AFTER = 60.0
#: Seconds between touches of the claims a run holds.
HEARTBEAT = 5.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claims:
    """The claims one run holds on an output folder.

    Args:
        root: the output folder (or the folder of the output shards).
        stale_after: seconds after which an untouched claim of another host is taken over.
        heartbeat: seconds between touches.
    """

    def __init__(self, root: str | os.PathLike[str], stale_after: float = STALE_AFTER,
                 heartbeat: float = HEARTBEAT) -> None:
        self.dir = Path(root) / CLAIMS_DIR
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self.held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, key: str) -> Path:
        return self.dir / (hashlib.sha1(key.encode()).hexdigest()[:32] + ".claim")

    def _record(self, key: str) -> bytes:
        return json.dumps({"key": key, "host": self.host, "pid": self.pid, "token": self.token,
                           "time": time.time()}).encode()

    def owner(self, key: str) -> dict | None:
        """The record of the claim on ``key``, None where there is none (or it cannot be read)."""
        return self.owner_of(self._path(key))

    @staticmethod
    def owner_of(path: Path) -> dict | None:
        """The record in a claim file, None where there is none (or it cannot be read)."""
        try:
            return json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None

    def stale(self, key: str) -> bool:
        """Whether the claim on ``key`` belongs to a run that is gone."""
        path = self._path(key)
        return self._stale_record(path, self.owner(key))

    def _stale_record(self, path: Path, rec: dict | None) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if rec is None:
            return age > self.stale_after  # being written, or damaged: give it time
        if rec.get("host") == self.host and not pid_alive(int(rec.get("pid", -1))):
            return True
        return age > self.stale_after

    def claim(self, key: str) -> bool:
        """Try to claim ``key``: True if this run now holds it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self.stale(key):
                return False
            return self._take_over(key, path)
        with os.fdopen(fd, "wb") as f:
            f.write(self._record(key))
        self._hold(key, path)
        return True

    def _take_over(self, key: str, path: Path) -> bool:
        tmp = path.with_name(f"{path.name}.{self.token}.tmp")
        tmp.write_bytes(self._record(key))
        os.replace(tmp, path)
        time.sleep(0.05)  # two runs taking over at once: the last replace wins, the other sees it
        rec = self.owner(key)
        if rec is None or rec.get("token") != self.token:
            return False
        self._hold(key, path)
        return True

    def _hold(self, key: str, path: Path) -> None:
        with self._lock:
            self.held[key] = path
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="ocrobin-claims", daemon=True)
            self._thread.start()

    def release(self, key: str) -> None:
        """Give ``key`` up (its outputs are written, or it failed)."""
        with self._lock:
            path = self.held.pop(key, None)
        if path is None:
            return
        rec = self.owner(key)
        if rec is not None and rec.get("token") == self.token:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                paths = list(self.held.values())
            for p in paths:
                try:
                    os.utime(p)
                except OSError:
                    pass

    def sweep(self) -> int:
        """Remove the claims (and half-written take-overs) of runs that are gone; returns how many.

        A claim on an output that a killed run had written but not yet released is never taken over, since
        nobody needs the page again; without this it would stay in the folder for good.
        """
        removed = 0
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return 0
        now = time.time()
        for path in entries:
            try:
                if path.suffix == ".tmp":
                    gone = now - path.stat().st_mtime > self.stale_after
                elif path.suffix == ".claim":
                    rec = self.owner_of(path)
                    mine = rec is not None and rec.get("token") == self.token
                    gone = not mine and self._stale_record(path, rec)
                else:
                    continue
                if gone:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def close(self) -> None:
        """Release every claim, stop touching them and remove those of runs that are gone."""
        self._stop.set()
        for key in list(self.held):
            self.release(key)
        self.sweep()
        try:
            self.dir.rmdir()  # only when empty: other runs may still hold claims
        except OSError:
            pass
