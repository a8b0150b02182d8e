"""Network architectures, in a registry by name so model files can name what to build.

Every model maps a batch of grey pages ``B×1×H×W`` (float, 0 = black, 1 = white) to ink logits of the
same size; :func:`ink_probability` turns them into probabilities. No file I/O here.

* ``lstm2-seed``: the original ocrobin network (1,001 parameters) exactly: 3×3 convolution,
  BatchNorm, ReLU, a 2-D LSTM that runs along rows then columns, 1×1 convolution. Its BatchNorm uses each
  image's own statistics (the original never switched to eval mode); :class:`Lstm2Seed` can also take
  statistics measured on a whole page so that tiles of one page share them.
* ``msfcn``: a multi-scale fully-convolutional network designed for the CPU: almost all work at 1/2 to
  1/32 resolution, a thin per-pixel head at full resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding an architecture to the registry under ``name``."""

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = cls
        return cls

    return deco


def architectures() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def grid(arch: str) -> int:
    """The side an architecture's input is padded to a multiple of (1 for an unknown name); tiles start on
    it, so the same page is cut the same way whichever backend runs the network."""
    return int(getattr(_REGISTRY.get(arch), "multiple", 1) or 1)


def build(arch: str, **hparams: Any) -> nn.Module:
    """Build an architecture by name.

    Raises:
        KeyError: unknown name (message lists the known ones).
    """
    if arch not in _REGISTRY:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(architectures())}")
    model = _REGISTRY[arch](**hparams)
    model.arch = arch  # type: ignore[attr-defined]
    model.hparams = dict(hparams)  # type: ignore[attr-defined]
    return model


def ink_probability(logits: torch.Tensor) -> torch.Tensor:
    """Ink probability from a model's logits."""
    return torch.sigmoid(logits)


#: Page contrast normalisation of new models (stored as ``page_norm`` in a model file's metadata): the
#: ``low`` and ``high`` percentiles of a page's grey values become black and white, with at most
#: ``max_gain`` times the original contrast.
PAGE_NORM: dict[str, float] = {"low": 0.5, "high": 99.5, "max_gain": 6.0}

#: Percentiles are measured on an even subsample of about this many pixels.
PAGE_NORM_SAMPLE = 250_000


def check_page_norm(spec: Mapping[str, Any]) -> dict[str, float]:
    """Validate a ``page_norm`` specification.

    Raises:
        ValueError: keys missing or values out of range.
    """
    try:
        out = {k: float(spec[k]) for k in ("low", "high", "max_gain")}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"page_norm needs numeric low, high and max_gain, got {dict(spec)!r}") from e
    if not (0.0 <= out["low"] < out["high"] <= 100.0 and out["max_gain"] >= 1.0):
        raise ValueError(f"page_norm needs 0 ≤ low < high ≤ 100 and max_gain ≥ 1, got {out}")
    return out


def page_norm_mapping(gray: np.ndarray, spec: Mapping[str, Any]) -> tuple[float, float]:
    """The affine grey mapping of :func:`normalize_page` for one page: (white point, gain).

    Measured once on the whole page, so tiles of a large page can each be mapped on their own with
    :func:`apply_page_norm` without a normalised copy of the whole page.
    """
    sp = check_page_norm(spec)
    step = max(1, int(math.sqrt(gray.size / PAGE_NORM_SAMPLE)))
    lo, hi = np.percentile(gray[::step, ::step], [sp["low"], sp["high"]])
    return float(hi), min(1.0 / max(float(hi - lo), 1e-6), sp["max_gain"])


def apply_page_norm(x: torch.Tensor, mapping: tuple[float, float]) -> torch.Tensor:
    """Map grey values with a (white point, gain) pair from :func:`page_norm_mapping`; a new float32 tensor.

    In torch rather than NumPy: it runs on the inference threads, a few milliseconds per megapixel.
    """
    hi, gain = mapping
    return (x.float() - hi).mul_(gain).add_(1.0).clamp_(0.0, 1.0)


def normalize_page(gray: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Stretch a page's grey range so its ``high`` percentile becomes white and its ``low`` one black.

    Why: faint ink and low-contrast scans (faded pages, one band of a multispectral capture) then reach
    the network as the contrast it learnt from. The paper end is kept and the gain capped, so a blank
    page's paper texture is not blown up into ink.

    Args:
        gray: float32 page in [0, 1] (0 = black).
        spec: ``low``, ``high`` (percentiles) and ``max_gain``, see :data:`PAGE_NORM`.

    Returns:
        A new float32 array in [0, 1].
    """
    return apply_page_norm(torch.from_numpy(np.ascontiguousarray(gray)), page_norm_mapping(gray, spec)).numpy()


def output_bias(model: nn.Module) -> torch.Tensor:
    """The bias added to every output logit (used to calibrate a model's threshold).

    Raises:
        TypeError: the architecture has no single output bias.
    """
    if isinstance(model, MultiScaleFCN):
        return model.head_bias
    if isinstance(model, Lstm2Seed) and model.out.bias is not None:
        return model.out.bias
    raise TypeError(f"{type(model).__name__} has no single output bias")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


class RowwiseLSTM(nn.Module):
    """A bidirectional LSTM that runs along image rows: B×D×H×W → B×2N×H×W."""

    def __init__(self, ninput: int, noutput: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(ninput, noutput, num_layers=1, bidirectional=True)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        b, d, h, w = img.shape
        seq = img.permute(3, 0, 2, 1).reshape(w, b * h, d)
        out, _ = self.lstm(seq)
        return out.reshape(w, b, h, -1).permute(1, 3, 2, 0)


class LSTM2(nn.Module):
    """Horizontal LSTM, then a vertical one on the transposed result (the original's 2-D LSTM)."""

    def __init__(self, ninput: int, nhidden: int) -> None:
        super().__init__()
        self.hlstm = RowwiseLSTM(ninput, nhidden)
        self.vlstm = RowwiseLSTM(2 * nhidden, nhidden)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h = self.hlstm(img)
        v = self.vlstm(h.transpose(2, 3))
        return v.transpose(2, 3)


@register("lstm2-seed")
class Lstm2Seed(nn.Module):
    """The original ocrobin network (``Sequential(conv, bn, relu, LSTM2, conv, sigmoid)``).

    Args:
        nfeat: channels of the first convolution (8 in the original).
        nhidden: LSTM units per direction (4 in the original).
        per_image_bn: normalise with each image's statistics, as the original did at inference.
    """

    def __init__(self, nfeat: int = 8, nhidden: int = 4, per_image_bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, nfeat, 3, padding=1)
        self.bn = nn.BatchNorm2d(nfeat)
        self.lstm = LSTM2(nfeat, nhidden)
        self.out = nn.Conv2d(2 * nhidden, 1, 1)
        self.per_image_bn = per_image_bn

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution's output, whose statistics the BatchNorm uses."""
        return self.conv(x)

    def forward(self, x: torch.Tensor, bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        f = self.features(x)
        if bn_stats is not None:
            mean, var = bn_stats
            f = F.batch_norm(f, mean, var, self.bn.weight, self.bn.bias, False, 0.0, self.bn.eps)
        elif self.per_image_bn and not self.training:
            mean = f.mean(dim=(2, 3), keepdim=True)
            var = ((f - mean) ** 2).mean(dim=(2, 3), keepdim=True)
            scale = self.bn.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.bn.eps)
            f = (f - mean) * scale + self.bn.bias.view(1, -1, 1, 1)
        else:
            f = self.bn(f)
        return self.out(self.lstm(F.relu(f)))


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register("msfcn")
class MultiScaleFCN(nn.Module):
    """Encoder–decoder over 1/4 … 1/32 resolution with a per-pixel full-resolution head.

    The page is folded 4×4 into channels (pixel-unshuffle), so every convolution runs at 1/4 resolution
    or below; wide context (1/32 and a dilated block there) lets it estimate paper, stains and ink
    contrast. The head decides each full-resolution pixel from its grey value and ``head`` features
    upsampled bilinearly from 1/4 resolution — a learned, locally varying threshold function. Full
    resolution sees only a few element-wise operations, which is what keeps it fast on a CPU.

    Args:
        widths: channels at 1/4, 1/8, 1/16 and 1/32 resolution.
        head: features per pixel in the full-resolution head.
    """

    multiple = 32

    def __init__(self, widths: tuple[int, ...] | list[int] = (24, 40, 64, 96), head: int = 8) -> None:
        super().__init__()
        w = list(widths)
        self.stem = nn.Sequential(_conv(16, w[0]), _conv(w[0], w[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(w[i - 1], w[i], stride=2), _conv(w[i], w[i])) for i in range(1, len(w))
        )
        self.context = _conv(w[-1], w[-1], dilation=2)
        self.up = nn.ModuleList(_conv(w[i] + w[i - 1], w[i - 1]) for i in range(len(w) - 1, 0, -1))
        self.to_head = nn.Conv2d(w[0], head, 1)
        self.head_x = nn.Parameter(torch.full((head,), -4.0) + torch.randn(head))
        self.head_out = nn.Parameter(torch.randn(head) * 0.5)
        self.head_bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        xin = x * 2.0 - 1.0
        if ph or pw:
            xin = F.pad(xin, (0, pw, 0, ph), mode="replicate")
        skips = [self.stem(F.pixel_unshuffle(xin, 4))]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = self.context(skips[-1])
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        y = F.interpolate(self.to_head(y), size=xin.shape[-2:], mode="bilinear", align_corners=False)
        y = torch.relu_(torch.addcmul(y, xin, self.head_x.view(1, -1, 1, 1)))
        out = torch.einsum("bchw,c->bhw", y, self.head_out).unsqueeze(1) + self.head_bias
        return out[:, :, :h, :w]

    # --- inference in bounded memory -------------------------------------------------------------------

    def _folded(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Each convolution block's convolution with its BatchNorm folded in: (weight, bias), by block id.

        Inference only (running statistics); computed once and kept until the weights are trained again.
        """
        cache = getattr(self, "_fold_cache", None)
        version = tuple(p._version for p in self.parameters())
        if cache is not None and cache[0] == version:
            return cache[1]
        folded = {}
        for block in self.modules():
            if isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], nn.BatchNorm2d):
                conv, bn = block[0], block[1]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = (conv.weight * scale.view(-1, 1, 1, 1)).detach()
                folded[id(block)] = (weight.contiguous(memory_format=torch.channels_last),
                                     (bn.bias - bn.running_mean * scale).detach())
        self._fold_cache = (version, folded)
        return folded

    def _block(self, block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        w, b = self._folded()[id(block)]
        conv = block[0]
        return torch.relu_(F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation))

    @staticmethod
    def _up_span(ia: int, ib: int, h_fine: int, h_coarse: int) -> tuple[int, int]:
        """Coarse rows whose ×2 bilinear upsampling gives fine rows ia..ib exactly (the edges of a crop
        clamp, so one more coarse row is taken on each side that is not the input's edge)."""
        ya = max(0, (ia - 1) // 2) if ia else 0
        yb = min(h_coarse, (ib + 2) // 2) if ib < h_fine else h_coarse
        return ya, yb

    def _up_rows(self, block: nn.Sequential, y: torch.Tensor, skip: torch.Tensor, rows: int) -> torch.Tensor:
        """``block(cat(upsample(y), skip))`` computed ``rows`` rows at a time (exactly, see :meth:`infer`)."""
        hf, hc = skip.shape[-2], y.shape[-2]
        out: torch.Tensor | None = None
        for a in range(0, hf, rows):
            b = min(hf, a + rows)
            ia, ib = max(0, a - 1), min(hf, b + 1)  # one row of context for the 3×3 convolution
            ya, yb = self._up_span(ia, ib, hf, hc)
            up = F.interpolate(y[:, :, ya:yb], size=(2 * (yb - ya), skip.shape[-1]), mode="bilinear",
                               align_corners=False)[:, :, ia - 2 * ya:ib - 2 * ya]
            part = self._block(block, torch.cat([up, skip[:, :, ia:ib]], 1))[:, :, a - ia:b - ia]
            if out is None:
                out = part.new_empty((part.shape[0], part.shape[1], hf, part.shape[3])).contiguous(
                    memory_format=torch.channels_last)
            out[:, :, a:b] = part
        assert out is not None
        return out

    @torch.no_grad()
    def infer(self, x: torch.Tensor | None = None, rows: int = 32, *,
              source: Callable[[int, int], torch.Tensor] | None = None,
              size: tuple[int, int] | None = None,
              emit: Callable[[int, int, int, torch.Tensor], None] | None = None,
              core: tuple[int, int, int, int] | None = None) -> torch.Tensor | None:
        """Ink logits like :meth:`forward` in eval mode, in a fraction of the memory and faster.

        BatchNorm is folded into the convolutions; tensors are channels-last, which the CPU convolutions
        take without reordered copies; and the last decoder block, the head's features and the
        full-resolution head run ``rows`` rows (at 1/4 resolution) at a time, each with the few rows of
        context its convolution and upsampling need, one head feature at a time. The biggest tensors of
        :meth:`forward` (the 1/4-resolution concatenation, the head's full-resolution features) never exist
        for the whole input. The same logits up to float rounding.

        Args:
            x: B×1×H×W grey input in [0, 1]; or
            source: ``source(r0, r1)`` gives rows r0..r1 of a 1×1×H×W input (so the input itself need not
                exist as floats), with ``size`` = (H, W).
            emit: ``emit(r0, r1, c0, logits)`` takes the logits of rows r0..r1 from column c0 on
                (B×1×(r1−r0)×…) as each band of rows is done, top to bottom; then the logits of the whole
                input never exist at once.
            core: (r0, r1, c0, c1): only these rows and columns are wanted (a tile's core: its overlap is
                context only). The last decoder block and the head, most of the work, then run on the core
                and the few rows and columns of context they need; the wanted logits are the same, and
                outside them the result holds no values (with ``emit``: bands cover the core rows, columns
                start at a multiple of 4 at or before c0).

        Returns:
            ink logits, B×1×H×W; None with ``emit``.
        """
        if source is None:
            assert x is not None
            h, w = x.shape[-2:]
            batch = x.shape[0]

            def source(r0: int, r1: int) -> torch.Tensor:
                return x[:, :, r0:r1]
        else:
            assert size is not None
            (h, w), batch = size, 1
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m

        def grey(r0: int, r1: int) -> torch.Tensor:
            """Rows r0..r1 of the padded input, as the network sees it (x * 2 - 1)."""
            part = source(min(r0, h - 1), min(r1, h))
            if r1 > h or pw:
                part = F.pad(part, (0, pw, 0, max(0, r1 - max(r0, h))), mode="replicate")[:, :, :r1 - r0]
            return part * 2.0 - 1.0

        # the stem (two 3×3 convolutions at 1/4 resolution), also by rows with two rows of context each side
        hp4 = (h + ph) // 4
        s0: torch.Tensor | None = None
        for a in range(0, hp4, 4 * rows):
            b = min(hp4, a + 4 * rows)
            ia, ib = max(0, a - 2), min(hp4, b + 2)
            u = F.pixel_unshuffle(grey(4 * ia, 4 * ib), 4).contiguous(memory_format=torch.channels_last)
            for block in self.stem:
                u = self._block(block, u)
            if s0 is None:
                s0 = u.new_empty((u.shape[0], u.shape[1], hp4, u.shape[3])).contiguous(
                    memory_format=torch.channels_last)
            s0[:, :, a:b] = u[:, :, a - ia:b - ia]
        assert s0 is not None
        skips = [s0]
        del u
        for down in self.down:
            y = skips[-1]
            for block in down:
                y = self._block(block, y)
            skips.append(y)
        y = self._block(self.context, skips[-1])
        for block, skip in zip(self.up[:-1], reversed(skips[1:-1]), strict=True):
            y = self._up_rows(block, y, skip, 4 * rows)
        del skips
        h4, h8, w4 = s0.shape[-2], y.shape[-2], s0.shape[-1]
        w8 = y.shape[-1]
        r0, r1, c0, c1 = core if core is not None else (0, h, 0, w)
        q0, q1 = c0 // 4, min(w4, -(-c1 // 4))  # the wanted columns at 1/4 resolution
        tq0, tq1 = max(0, q0 - 1), min(w4, q1 + 1)  # head features: one column more each side
        iq0, iq1 = max(0, tq0 - 1), min(w4, tq1 + 1)  # decoder input: one more (3×3 convolution)
        xa, xb = self._up_span(iq0, iq1, w4, w8)
        out = s0.new_empty((batch, 1, h + ph, w + pw)) if emit is None else None
        for a in range(r0 // 4 // rows * rows, min(h4, -(-r1 // 4)), rows):  # the bands of the whole input
            b = min(h4, a + rows)
            ta, tb = max(0, a - 1), min(h4, b + 1)  # head features: one row more each side (×4 upsampling)
            ia, ib = max(0, ta - 1), min(h4, tb + 1)  # decoder input: one row more (3×3 convolution)
            ya, yb = self._up_span(ia, ib, h4, h8)
            up = F.interpolate(y[:, :, ya:yb, xa:xb], size=(2 * (yb - ya), 2 * (xb - xa)), mode="bilinear",
                               align_corners=False)[:, :, ia - 2 * ya:ib - 2 * ya, iq0 - 2 * xa:iq1 - 2 * xa]
            t = self._block(self.up[-1], torch.cat([up, s0[:, :, ia:ib, iq0:iq1]], 1))[
                :, :, ta - ia:tb - ia, tq0 - iq0:tq1 - iq0]
            t = self.to_head(t).contiguous()
            g = grey(4 * a, 4 * b)[:, :, :, 4 * q0:4 * q1]
            acc = None
            for c in range(t.shape[1]):
                f = F.interpolate(t[:, c:c + 1], size=(4 * (tb - ta), 4 * (tq1 - tq0)), mode="bilinear",
                                  align_corners=False)[:, :, 4 * (a - ta):4 * (b - ta), 4 * (q0 - tq0):4 * (q1 - tq0)]
                f = torch.relu_(f.addcmul_(g, self.head_x[c])).mul_(self.head_out[c])
                acc = f if acc is None else acc.add_(f)
            assert acc is not None
            if out is not None:
                out[:, :, 4 * a:4 * b, 4 * q0:4 * q1] = acc + self.head_bias
            elif 4 * a < h:
                emit(4 * a, min(h, 4 * b), 4 * q0,
                     acc.add_(self.head_bias)[:, :, :min(h, 4 * b) - 4 * a, :max(0, w - 4 * q0)])
        return out[:, :, :h, :w] if out is not None else None
