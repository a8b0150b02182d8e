"""Training: patch sampling from shards and DIBCO-style folders, augmentation, checkpoints, DDP.

Data flow: each source streams whole pages in a fixed, seeded order (shard samples or folder pages) into
a small pool; every batch draws patches from the pools with a generator seeded by (seed, step, rank).
So the state of a run is the model, the optimizer, the step and how many pages each source has read: a
checkpoint stores exactly that, and a resumed run re-reads the last pool pages and continues with the
very batch it would have drawn next. Memory is bounded by the pool size, not by the data size.
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, models, shards
from .augment import Augment, blank_patch, sample_patch, to_u8
from .datasets import complete_pairs
from .exceptions import DataError, UsageError
from .imageio import decode_gray, read_gray
from .infer import model_view
from .modelfile import ModelInfo, make_meta, save_model

# ---------------------------------------------------------------------------------------------- schedule


def parse_schedule(spec: str) -> list[tuple[int, float]]:
    """Parse a learning-rate schedule ``"samples,lr:samples,lr"`` (the original's format).

    ``"0,1e-3:100000,1e-4"`` means 1e-3 from sample 0, 1e-4 from sample 100,000 on. A single number is a
    constant rate.

    Raises:
        UsageError: malformed entries, negative or unsorted sample counts, non-positive rates.
    """
    spec = spec.strip()
    try:
        if "," not in spec:
            lr = float(spec)
            if not lr > 0:
                raise ValueError
            return [(0, lr)]
        out = []
        for part in spec.split(":"):
            n, lr = part.split(",")
            out.append((int(float(n)), float(lr)))
    except ValueError as e:
        raise UsageError(f"bad learning-rate schedule {spec!r}: expected 'samples,lr:samples,lr'") from e
    if out[0][0] != 0:
        out.insert(0, (0, out[0][1]))
    if any(b[0] <= a[0] for a, b in zip(out, out[1:], strict=False)) or any(lr <= 0 for _, lr in out):
        raise UsageError(f"bad learning-rate schedule {spec!r}: sample counts must rise and rates be > 0")
    return out


def lr_at(schedule: list[tuple[int, float]], samples: int) -> float:
    """Learning rate in force after ``samples`` samples."""
    lr = schedule[0][1]
    for n, r in schedule:
        if samples >= n:
            lr = r
    return lr


# ------------------------------------------------------------------------------------------------ sources


@dataclass
class Pair:
    """One training page: grey uint8 (0 = black) and ink mask (True = text)."""

    gray: np.ndarray
    ink: np.ndarray
    name: str
    _ink_points: np.ndarray | None = field(default=None, repr=False, compare=False)

    def ink_points(self) -> np.ndarray:
        """Coordinates (N×2, y and x) of the ink pixels, found once per page rather than once per patch."""
        if self._ink_points is None:
            self._ink_points = np.argwhere(self.ink).astype(np.int32)
        return self._ink_points


def _check_pair(gray: np.ndarray, ink: np.ndarray, name: str, page_norm: dict[str, float] | None = None,
                band_view: bool = False) -> Pair:
    """A training page as the model will see it: normalised, with ``band_view`` its reverse-printed bands
    inverted and normalised apart as the binarizer shows them (:func:`ocrobin.infer.model_view`)."""
    if gray.shape != ink.shape:
        raise DataError(f"{name}: image {gray.shape} and ground truth {ink.shape} differ in size")
    if band_view:
        gray = model_view(gray, page_norm)
    elif page_norm:
        gray = models.normalize_page(gray, page_norm)
    return Pair(to_u8(gray), ink, name)


class Source:
    """An endless, seeded stream of training pages from shards or a DIBCO-style folder.

    Args:
        spec: shard pattern / ``.tar`` path, or a folder; an optional ``=WEIGHT`` suffix sets its share.
        seed: seed for the page order (each pass over the data is reshuffled).
        gray_key: sample key of the input page in shards.
    """

    def __init__(self, spec: str, seed: int = 0, gray_key: str = shards.GRAY_KEY) -> None:
        path, _, weight = spec.rpartition("=") if "=" in spec else (spec, "", "1")
        try:
            self.weight = float(weight)
        except ValueError as e:
            raise UsageError(f"bad data weight in {spec!r}") from e
        if not self.weight > 0:
            raise UsageError(f"data weight must be > 0 in {spec!r}")
        self.spec = path
        self.seed = seed
        self.gray_key = gray_key
        #: contrast normalisation applied to each whole page as it is read (the model's, set by the trainer)
        self.page_norm: dict[str, float] | None = None
        #: show bands as the binarizer does (set by the trainer)
        self.band_view = False
        p = Path(path)
        if p.is_dir():
            self.kind = "folder"
            self.items: list[Any] = complete_pairs(p)
        else:
            self.kind = "shards"
            self.items = shards.expand_urls(path)
            missing = [u for u in self.items if "://" not in u and not os.path.exists(u)]
            if missing:
                raise DataError(f"{missing[0]}: no such shard or folder")
        self.consumed = 0

    def _order(self, epoch: int) -> list[Any]:
        rng = np.random.default_rng([self.seed, epoch, 7])
        return [self.items[i] for i in rng.permutation(len(self.items))]

    def _decode_sample(self, sample: dict[str, Any]) -> Pair:
        name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
        key = shards.image_key(sample, self.gray_key)
        if shards.BIN_KEY not in sample:
            raise DataError(f"{name}: sample has no {shards.BIN_KEY!r} ground truth")
        gray = decode_gray(sample[key], name)
        ink = decode_gray(sample[shards.BIN_KEY], name) < 0.5
        return _check_pair(gray, ink, name, self.page_norm, self.band_view)

    def pages(self, start: int = 0) -> Iterator[Pair]:
        """Pages from position ``start`` on (positions count across passes); skipped ones cost no decoding."""
        pos = 0
        epoch = 0
        while True:
            produced = False
            for item in self._order(epoch):
                if self.kind == "folder":
                    if pos >= start:
                        img, gt = item
                        gray = read_gray(img)
                        ink = read_gray(gt) < 0.5
                        yield _check_pair(gray, ink, str(img), self.page_norm, self.band_view)
                    pos += 1
                    produced = True
                else:
                    for sample in shards.iter_samples([item]):
                        if pos >= start:
                            yield self._decode_sample(sample)
                        pos += 1
                        produced = True
            if not produced:
                raise DataError(f"{self.spec}: no samples")
            epoch += 1


class Pool:
    """The last ``size`` pages read from a source; one page is replaced every ``refresh`` steps."""

    def __init__(self, source: Source, size: int) -> None:
        self.source = source
        self.size = size
        start = max(0, source.consumed - size)
        self.stream = source.pages(start)
        self.pages: deque[Pair] = deque(maxlen=size)
        for _ in range(source.consumed - start):
            self.pages.append(next(self.stream))
        while len(self.pages) < size:
            self.advance()

    def advance(self) -> None:
        self.pages.append(next(self.stream))
        self.source.consumed += 1


# ------------------------------------------------------------------------------------------ loss & eval


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus a soft F-measure term (what DIBCO ranks by)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    tp = (p * target).sum()
    soft_f = 2 * tp / (p.sum() + target.sum() + 1.0)
    return bce + 0.5 * (1.0 - soft_f)


@torch.inference_mode()
def validate(model: nn.Module, pairs: list[Pair]) -> float:
    """Mean F-measure (%) of ``model`` on whole validation pages, thresholded at 0.5."""
    was = model.training
    model.eval()
    fms = []
    for pr in pairs:
        x = torch.from_numpy(pr.gray.astype(np.float32) / 255.0)[None, None]
        p = torch.sigmoid(model(x))[0, 0].numpy()
        fms.append(metrics.fmeasure(pr.ink, p > 0.5))
    model.train(was)
    return float(np.mean(fms)) if fms else float("nan")


# --------------------------------------------------------------------------------------------- state


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in js.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": js["param_groups"]})


# ------------------------------------------------------------------------------------------- trainer


@dataclass
class TrainConfig:
    """Everything ``ocrobin train`` needs (see the CLI for meanings)."""

    data: list[str]
    output: str
    schedule: str = "0,1e-3:400000,3e-4:800000,1e-4"
    batch: int = 8
    resume: str | None = None
    save_every: int = 20000
    ntrain: int | None = None
    maxtrain: int = 1_000_000
    arch: str = "msfcn"
    hparams: dict[str, Any] = field(default_factory=dict)
    patch: int = 256
    val: str | None = None
    val_every: int = 10000
    threads: int | None = None
    seed: int = 0
    optimizer: str = "adam"
    pool: int = 24
    refresh: int = 4
    augment: Augment = field(default_factory=Augment)
    gray_key: str = shards.GRAY_KEY
    page_norm: str | None = None
    #: show training pages' reverse-printed bands to the model as the binarizer does (inverted, normalised
    #: apart from the rest of the page); False: as printed
    band_view: bool = True
    #: ``bf16``: forward pass under bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX); the loss,
    #: the weights and validation stay float32
    precision: str = "fp32"
    progress: bool = True
    command: str = ""


def resolve_page_norm(spec: str | None, inherited: dict[str, Any] | None, new_model: bool) -> dict[str, float] | None:
    """The page normalisation a run trains with.

    Args:
        spec: ``--page-norm``: ``LOW,HIGH,MAX_GAIN``, ``none``, or None (keep the resumed model's; a new
            model gets :data:`ocrobin.models.PAGE_NORM`).
        inherited: the ``page_norm`` of the model resumed from, if any.
        new_model: whether the run builds a new model.

    Raises:
        UsageError: ``spec`` is malformed.
    """
    if spec is None:
        base = dict(models.PAGE_NORM) if new_model else inherited
        return models.check_page_norm(base) if base else None
    if spec.strip().lower() == "none":
        return None
    parts = spec.split(",")
    if len(parts) != 3:
        raise UsageError(f"--page-norm wants LOW,HIGH,MAX_GAIN or 'none', got {spec!r}")
    try:
        return models.check_page_norm(dict(zip(("low", "high", "max_gain"), parts, strict=True)))
    except ValueError as e:
        raise UsageError(f"--page-norm: {e}") from e


def _dist() -> tuple[int, int]:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Runs ``ocrobin train``: builds or resumes a model, streams patches, steps, validates, saves."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rank, self.world = _dist()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.batch < 1 or cfg.patch < 32:
            raise UsageError("batch size must be ≥ 1 and patch size ≥ 32")
        if cfg.precision not in ("fp32", "bf16"):
            raise UsageError(f"unknown precision {cfg.precision!r} (fp32 or bf16)")
        self.schedule = parse_schedule(cfg.schedule)
        self.sources = [Source(s, seed=cfg.seed + 1000 * i, gray_key=cfg.gray_key) for i, s in enumerate(cfg.data)]
        if not self.sources:
            raise UsageError("no training data given (-d)")
        self.samples = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.wall = 0.0
        train_state: dict[str, Any] | None = None
        extra: dict[str, torch.Tensor] = {}
        if cfg.resume:
            from .infer import load

            info: ModelInfo = load(cfg.resume)
            self.model = info.model
            self.arch = info.meta["arch"]
            prov = info.meta.get("provenance", {})
            self.samples = int(prov.get("samples", 0) or 0)
            train_state = info.meta.get("train")
            extra = info.extra
            self.base_meta = info.meta
        else:
            try:
                self.model = models.build(cfg.arch, **cfg.hparams)
            except (KeyError, TypeError) as e:
                raise UsageError(str(e)) from e
            self.arch = cfg.arch
            self.base_meta = {}
        self.page_norm = resolve_page_norm(cfg.page_norm, self.base_meta.get("page_norm") if cfg.resume else None,
                                           new_model=not cfg.resume)
        for s in self.sources:
            s.page_norm, s.band_view = self.page_norm, cfg.band_view
        if isinstance(self.model, models.Lstm2Seed):
            self.model.per_image_bn = True
        self.model.train()
        params = self.model.parameters()
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=self.schedule[0][1], momentum=0.9)
        elif cfg.optimizer == "adam":
            self.opt = torch.optim.AdamW(params, lr=self.schedule[0][1], weight_decay=1e-4)
        else:
            raise UsageError(f"unknown optimizer {cfg.optimizer!r} (sgd or adam)")
        if train_state and train_state.get("optimizer") == cfg.optimizer:
            restore_optimizer(self.opt, extra, train_state["optimizer_state"])
            self.step = int(train_state["step"])
            self.wall = float(train_state.get("wall_s", 0.0))
            self.history = list(train_state.get("history", []))
            consumed = train_state.get("consumed", {})
            for s in self.sources:
                s.consumed = int(consumed.get(s.spec, 0))
            if "torch_rng" in extra:
                torch.set_rng_state(extra["torch_rng"])
        self.ddp: nn.Module = self.model
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model)
        self._check_outputs()
        self.pools = [Pool(s, cfg.pool) for s in self.sources]
        weights = np.array([s.weight for s in self.sources])
        self.weights = weights / weights.sum()
        self.val_pairs: list[Pair] = []
        if cfg.val and self.rank == 0:
            for img, gt in complete_pairs(Path(cfg.val)):
                self.val_pairs.append(_check_pair(read_gray(img), read_gray(gt) < 0.5, str(img), self.page_norm))
        self.last_val: float | None = None
        self.val_at = -1
        self._stop = False

    def _check_outputs(self) -> None:
        """Refuse a run whose log, plot or checkpoints would overwrite its data or the model it resumes from."""
        from .paths import check_no_clash, resolved

        inputs: list[Any] = []
        for s in self.sources:
            inputs.extend(s.items if s.kind == "shards" else [f for pair in s.items for f in pair])
        if self.cfg.val:
            inputs.extend(f for pair in complete_pairs(Path(self.cfg.val)) for f in pair)
        if self.cfg.resume and Path(self.cfg.resume).is_file():
            inputs.append(self.cfg.resume)
            target = self.cfg.maxtrain if self.cfg.ntrain is None else min(self.cfg.maxtrain,
                                                                            self.samples + self.cfg.ntrain)
            first = resolved(f"{self.cfg.output}-{self.samples:09d}-")  # the name a run that trains nothing saves
            mine = resolved(self.cfg.resume)
            if target <= self.samples and mine.parent == first.parent and mine.name.startswith(first.name):
                raise UsageError(f"checkpoints {first}*.safetensors would overwrite the model resumed from, "
                                 f"{self.cfg.resume} (choose another -o)")
        check_no_clash(inputs, [f"{self.cfg.output}.log.csv", f"{self.cfg.output}.plot.png"])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of the current step (a pure function of seed, step, rank and the pools)."""
        rng = np.random.default_rng([self.cfg.seed, self.step, self.rank])
        xs, ys = [], []
        for _ in range(self.cfg.batch):
            pool = self.pools[int(rng.choice(len(self.pools), p=self.weights))]
            page = pool.pages[int(rng.integers(len(pool.pages)))]
            ghost = None
            if rng.random() < self.cfg.augment.ghost:
                other = self.pools[int(rng.integers(len(self.pools)))]
                ghost = other.pages[int(rng.integers(len(other.pages)))]
            if self.page_norm and rng.random() < self.cfg.augment.blank:
                g, t = blank_patch(self.cfg.patch, rng, self.page_norm)
            else:
                g, t = sample_patch(page, self.cfg.patch, rng, self.cfg.augment, ghost)
            xs.append(g)
            ys.append(t)
        return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        lr = lr_at(self.schedule, self.samples)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, y = self.batch()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            logits = self.ddp(x)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.samples += self.cfg.batch * self.world
        if self.step % self.cfg.refresh == 0:
            # one page in, one page out, in the source's share: reading costs the same whatever the mix
            pick = np.random.default_rng([self.cfg.seed, self.step, 1 << 20]).choice(len(self.pools), p=self.weights)
            self.pools[int(pick)].advance()
        return float(loss.detach())

    def checkpoint_path(self) -> str:
        fm = f"{self.last_val:.2f}" if self.last_val is not None else "nan"
        return f"{self.cfg.output}-{self.samples:09d}-{fm}.safetensors"

    def save(self, path: str | None = None) -> str:
        """Write a checkpoint (model, optimizer, RNG, data positions) atomically; rank 0 only."""
        path = path or self.checkpoint_path()
        tensors, opt_js = optimizer_tensors(self.opt)
        tensors["torch_rng"] = torch.get_rng_state()
        prov = dict(self.base_meta.get("provenance", {}))
        prov.update(
            data=[s.spec for s in self.sources],
            command=self.cfg.command or prov.get("command", ""),
            samples=self.samples,
            steps=self.step,
            wall_s=round(self.wall, 1),
            val=self.cfg.val,
            val_fm=self.last_val,
        )
        meta = make_meta(self.model, **prov)
        meta["name"] = Path(self.cfg.output).name
        if self.page_norm:
            meta["page_norm"] = self.page_norm
        meta["train"] = {
            "step": self.step,
            "optimizer": self.cfg.optimizer,
            "optimizer_state": opt_js,
            "consumed": {s.spec: s.consumed for s in self.sources},
            "seed": self.cfg.seed,
            "wall_s": self.wall,
            "history": self.history[-2000:],
        }
        save_model(path, self.model, meta, tensors)
        return path

    def log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        path = Path(f"{self.cfg.output}.log.csv")
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["samples", "step", "loss", "lr", "val_fm", "wall_s"])
            if new:
                w.writeheader()
            w.writerow({k: row.get(k) for k in w.fieldnames})

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.history
        if not rows:
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["samples"] for r in rows if r.get("loss") is not None],
                [r["loss"] for r in rows if r.get("loss") is not None], color="tab:blue", lw=0.8)
        ax.set_xlabel("samples")
        ax.set_ylabel("loss", color="tab:blue")
        ax2 = ax.twinx()
        vals = [(r["samples"], r["val_fm"]) for r in rows if r.get("val_fm") is not None]
        if vals:
            ax2.plot(*zip(*vals, strict=True), "o-", color="tab:red")
        ax2.set_ylabel("val FM (%)", color="tab:red")
        fig.tight_layout()
        from .imageio import atomic_path

        with atomic_path(f"{self.cfg.output}.plot.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)

    def run(self) -> str | None:
        """Train until ``ntrain`` more samples or ``maxtrain`` in all; returns the last checkpoint."""
        cfg = self.cfg
        target = cfg.maxtrain
        if cfg.ntrain is not None:
            target = min(target, self.samples + cfg.ntrain)
        last_path = None
        saved_at = -1
        bar = None
        if cfg.progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=max(0, target - self.samples), unit="sample", dynamic_ncols=True)
        old = signal.getsignal(signal.SIGTERM)

        def _term(signum: int, frame: Any) -> None:
            self._stop = True

        signal.signal(signal.SIGTERM, _term)
        losses: list[float] = []
        next_save = (self.samples // cfg.save_every + 1) * cfg.save_every
        next_val = (self.samples // cfg.val_every + 1) * cfg.val_every
        t0 = time.time()
        try:
            while self.samples < target and not self._stop:
                before = self.samples
                losses.append(self.train_step())
                if bar is not None:
                    bar.update(self.samples - before)
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=lr_at(self.schedule, self.samples),
                                    val=self.last_val)
                do_val = self.samples >= next_val
                do_save = self.samples >= next_save
                if do_val and self.rank == 0 and self.val_pairs:
                    self.last_val = validate(self.model, self.val_pairs)
                    self.val_at = self.samples
                if (do_val or do_save) and self.rank == 0:
                    self.wall += time.time() - t0
                    t0 = time.time()
                    self.log({"samples": self.samples, "step": self.step, "loss": float(np.mean(losses[-200:])),
                              "lr": lr_at(self.schedule, self.samples),
                              "val_fm": self.last_val if do_val else None, "wall_s": round(self.wall, 1)})
                    self.plot()
                if do_val:
                    next_val += cfg.val_every
                if do_save:
                    next_save += cfg.save_every
                    if self.rank == 0:
                        last_path = self.save()
                        saved_at = self.samples
        except KeyboardInterrupt:
            self._stop = True
        finally:
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        self.wall += time.time() - t0
        if self.rank == 0 and saved_at != self.samples:
            if self.val_pairs and self.val_at != self.samples:
                self.last_val = validate(self.model, self.val_pairs)
                self.val_at = self.samples
            last_path = self.save()
        return last_path


def run_training(cfg: TrainConfig) -> str | None:
    """Train as configured; returns the last checkpoint written (rank 0) or None."""
    return Trainer(cfg).run()
