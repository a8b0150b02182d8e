"""``ocrobin train``: train or fine-tune a model on shards and DIBCO-style folders."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="train or fine-tune a binarization model",
        description="Train on webdataset shards (gray.png + bin.png samples, from 'ocrobin degrade' or "
        "'ocrobin shards') and/or DIBCO-style folders (SET/img, SET/gt). Checkpoints are named "
        "PREFIX-<samples>-<val FM>.safetensors and hold optimizer and RNG state, so '-m CHECKPOINT' resumes "
        "exactly. Runs under torchrun for multi-process / multi-machine training (gloo on CPU).",
    )
    p.add_argument("-d", "--data", nargs="+", action="extend", required=True, metavar="DATA",
                   help="shards ('synth-{000000..000009}.tar') or folders; append '=W' to weight a source "
                   "(default 1), e.g. 'real-{000..003}.tar=2'")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX", help="checkpoint name prefix")
    p.add_argument("-l", "--lr", default="0,1e-3:400000,3e-4:800000,1e-4", metavar="SCHEDULE",
                   help="learning-rate schedule 'samples,lr:samples,lr' (default %(default)s)")
    p.add_argument("-b", "--batchsize", type=int, default=8, help="patches per step and process (default 8)")
    p.add_argument("-m", "--model", default=None,
                   help="resume from a checkpoint or start from a model (name such as 'default', our file, or a "
                   "legacy .pt); the sample count continues")
    p.add_argument("--save-every", type=int, default=20000, metavar="N", help="checkpoint every N samples")
    p.add_argument("--ntrain", type=int, default=None, metavar="N",
                   help="train N more samples in this run (a resumable chunk)")
    p.add_argument("--maxtrain", type=int, default=1_000_000, metavar="N",
                   help="stop when the total sample count reaches N (default %(default)s)")
    p.add_argument("--random-invert", type=float, default=0.0, metavar="P",
                   help="invert a patch's grey values with probability P (light-on-dark text)")
    p.add_argument("--min-range", type=float, default=0.25, metavar="R",
                   help="contrast augmentation: squeeze a patch's grey range down to as little as R")
    p.add_argument("--scale", default="0.6,1.6", metavar="LO,HI",
                   help="scale augmentation: patches are resized by a factor drawn log-uniform in LO..HI "
                   "(default %(default)s)")
    p.add_argument("--arch", default="msfcn", help="architecture for a new model (msfcn, lstm2-seed)")
    p.add_argument("--hparams", default="{}", metavar="JSON", help="architecture hyper-parameters as JSON")
    p.add_argument("--patch", type=int, default=256, metavar="SIZE", help="patch side in pixels")
    p.add_argument("--val", default=None, metavar="DIR", help="DIBCO-style validation folder")
    p.add_argument("--val-every", type=int, default=10000, metavar="N", help="validate every N samples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, patches and augmentation")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="AdamW or SGD with momentum 0.9 (the original used SGD)")
    p.add_argument("--pool", type=int, default=24, metavar="N", help="pages held in memory per source")
    p.add_argument("--page-norm", default=None, metavar="LOW,HIGH,GAIN",
                   help="page contrast normalisation: grey percentiles LOW and HIGH become black and white, at most "
                   "GAIN times the contrast; 'none' turns it off (default: the resumed model's; a new model gets "
                   "0.5,99.5,6)")
    p.add_argument("--input-key", default="gray.png", help="sample key of the input page in shards")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: forward pass under bfloat16 autocast, faster on CPUs with AVX512-BF16/AMX; "
                   "weights, loss and validation stay float32 (default fp32)")
    p.add_argument("--bands-as-printed", action="store_true",
                   help="show reverse-printed bands of training pages to the model as printed; by default they are "
                   "shown as the binarizer shows them: found, inverted and normalised apart from the rest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..exceptions import UsageError
    from ..train import Augment, TrainConfig, run_training

    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as e:
        raise UsageError(f"--hparams is not JSON: {e}") from e
    try:
        lo, hi = (float(v) for v in args.scale.split(","))
    except ValueError as e:
        raise UsageError(f"--scale must be LO,HI (two numbers), not {args.scale!r}") from e
    if not 0 < lo <= hi:
        raise UsageError(f"--scale needs 0 < LO <= HI, not {args.scale!r}")
    cfg = TrainConfig(
        data=args.data, output=args.output, schedule=args.lr, batch=args.batchsize, resume=args.model,
        save_every=args.save_every, ntrain=args.ntrain, maxtrain=args.maxtrain, arch=args.arch, hparams=hparams,
        patch=args.patch, val=args.val, val_every=args.val_every, threads=args.threads, seed=args.seed,
        optimizer=args.optimizer, pool=args.pool, gray_key=args.input_key, page_norm=args.page_norm,
        precision=args.precision, progress=not args.no_progress, band_view=not args.bands_as_printed,
        augment=Augment(scale=(lo, hi), min_range=args.min_range, random_invert=args.random_invert),
        command="ocrobin " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    path = run_training(cfg)
    if path:
        print(f"last checkpoint: {path}")
    return 0
