"""Training steps per second in float32 and under bfloat16 autocast (``ocrobin train --precision bf16``).

Times the optimisation step of ``ocrobin train`` (forward, loss, backward, AdamW) on random 320×320 patches,
batch 16, as the default model's runs use them; median of the timed steps after two warm-up steps.

    .venv/bin/python benchmarks/train_speed.py --threads 2 [--arch msfcn] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ocrobin import models
from ocrobin.train import loss_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="msfcn")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=320)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.patch, args.patch)
    y = (torch.rand(args.batch, 1, args.patch, args.patch) > 0.9).float()
    print(f"{args.arch}, batch {args.batch} × {args.patch}², {args.threads} threads")
    rates = {}
    for precision in ("fp32", "bf16"):
        m = models.build(args.arch).train()
        opt = torch.optim.AdamW(m.parameters(), 1e-4)
        times = []
        for i in range(args.steps + 2):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = m(x)
            loss_fn(logits.float(), y).backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        rates[precision] = args.batch / statistics.median(times)
        print(f"{precision}: {rates[precision]:.1f} samples/s")
    print(f"bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}×")


if __name__ == "__main__":
    main()
