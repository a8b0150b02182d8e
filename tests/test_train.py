import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from ocrobin import models
from ocrobin.augment import to_u8
from ocrobin.cli import main
from ocrobin.exceptions import DataError, UsageError
from ocrobin.imageio import encode_png
from ocrobin.infer import load
from ocrobin.train import (
    Augment,
    Source,
    TrainConfig,
    Trainer,
    blank_patch,
    loss_fn,
    lr_at,
    parse_schedule,
    resolve_page_norm,
)

from .conftest import page_with_band, text_page

TINY = {"widths": [8, 8, 8, 8], "head": 4}


def make_set(root, n=3):
    for sub in ("img", "gt"):
        (root / "S" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        g = text_page(128, 128, seed=i)
        Image.fromarray(g).save(root / "S" / "img" / f"p{i}.png")
        Image.fromarray(np.where(g < 120, 0, 255).astype(np.uint8)).save(root / "S" / "gt" / f"p{i}.png")
    return root


def cfg(tmp_path, data, **kw):
    base = dict(data=data if isinstance(data, list) else [str(data)], output=str(tmp_path / "ck" / "m"),
                schedule="0,3e-3", batch=4, patch=64,
                arch="msfcn", hparams=TINY, pool=2, save_every=1000, val_every=1000, progress=False, seed=3,
                augment=Augment(jpeg=0.0))
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_parsing():
    s = parse_schedule("0,1e-3:1000,1e-4")
    assert s == [(0, 1e-3), (1000, 1e-4)]
    assert lr_at(s, 999) == 1e-3 and lr_at(s, 1000) == 1e-4
    assert parse_schedule("0.01") == [(0, 0.01)]
    assert parse_schedule("500,1e-2") == [(0, 1e-2), (500, 1e-2)]
    for bad in ("abc", "0,1e-3:0,1e-4", "0,-1", "0,1e-3:x,1"):
        with pytest.raises(UsageError):
            parse_schedule(bad)


def test_tiny_training_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    t = Trainer(cfg(tmp_path, make_set(tmp_path / "d"), schedule="0,1e-2"))
    x, y = t.batch()
    with torch.no_grad():  # batch statistics, as in training
        before = float(loss_fn(t.model(x), y))
    for _ in range(60):
        t.train_step()
    with torch.no_grad():
        after = float(loss_fn(t.model(x), y))
    assert after < 0.8 * before


def test_resume_continues_exactly(tmp_path):
    data = make_set(tmp_path / "d")
    torch.manual_seed(0)
    first = Trainer(cfg(tmp_path / "a", data, ntrain=16))
    path = first.run()
    assert path.endswith("m-000000016-nan.safetensors")
    for _ in range(2):
        first.train_step()
    resumed = Trainer(cfg(tmp_path / "b", data, resume=path))
    assert resumed.samples == 16 and resumed.step == 4
    for _ in range(2):
        resumed.train_step()
    assert resumed.samples == first.samples == 24
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=1e-6)


def test_checkpoint_round_trip_and_logs(tmp_path):
    data = make_set(tmp_path / "d")
    c = cfg(tmp_path, data, ntrain=16, val=str(data), val_every=8, save_every=8)
    path = Trainer(c).run()
    info = load(path)
    assert info.meta["provenance"]["samples"] == 16
    assert info.meta["train"]["step"] == 4
    assert any(k.startswith("optim.") for k in info.extra) and "torch_rng" in info.extra
    fm = info.meta["provenance"]["val_fm"]
    assert 0 <= fm <= 100 and path.endswith(f"-{fm:.2f}.safetensors")
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert "m.log.csv" in names and "m.plot.png" in names
    assert sum(n.startswith("m-000000008-") for n in names) == 1
    rows = (tmp_path / "ck" / "m.log.csv").read_text().splitlines()
    assert rows[0].startswith("samples,step,loss")


def test_shards_and_folders_mix(tmp_path):
    data = make_set(tmp_path / "d")
    shard = tmp_path / "s-000000.tar"
    with wds.TarWriter(str(shard)) as w:
        g = text_page(100, 100, seed=9)
        w.write({"__key__": "a", "gray.png": encode_png(g), "bin.png": encode_png(np.where(g < 120, 0, 255)
                                                                             .astype(np.uint8))})
    t = Trainer(cfg(tmp_path, [str(data), f"{shard}=3"], ntrain=8))
    assert t.weights.tolist() == [0.25, 0.75]
    t.run()
    assert t.sources[1].consumed >= 2


def test_bad_data_gives_clear_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        Source(str(tmp_path / "nowhere.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DIBCO-style set"):
        Source(str(tmp_path / "empty"))
    shard = tmp_path / "nogt.tar"
    with wds.TarWriter(str(shard)) as w:
        w.write({"__key__": "a", "gray.png": encode_png(text_page())})
    with pytest.raises(DataError, match="bin.png"):
        next(Source(str(shard)).pages())
    with pytest.raises(UsageError, match="weight"):
        Source(f"{shard}=zero")
    d = make_set(tmp_path / "mm", n=1)
    Image.new("L", (10, 10)).save(d / "S" / "gt" / "p0.png")
    with pytest.raises(DataError, match="differ in size"):
        next(Source(str(d)).pages())


def test_cli_train_and_fine_tune_from_a_model(tmp_path, capsys):
    data = make_set(tmp_path / "d")
    out = tmp_path / "c" / "m"
    rc = main(["train", "-d", str(data), "-o", str(out), "--ntrain", "8", "-b", "4", "--patch", "64",
               "--hparams", '{"widths": [8, 8, 8, 8], "head": 4}', "--no-progress"])
    assert rc == 0
    ck = capsys.readouterr().out.split("last checkpoint: ")[1].strip()
    rc = main(["train", "-d", str(data), "-o", str(out), "-m", ck, "--ntrain", "8", "-b", "4", "--patch", "64",
               "--no-progress"])
    assert rc == 0
    assert load(capsys.readouterr().out.split("last checkpoint: ")[1].strip()).meta["provenance"]["samples"] == 16
    assert main(["train", "-d", str(data), "-o", str(out), "--hparams", "{bad"]) == 2


#: Runs ``ocrobin train`` in one torchrun process and dumps what that rank saw and ended with.
_RANK_DUMP = """
import hashlib, json, os, sys

from safetensors.torch import save_file

from ocrobin import train
from ocrobin.augment import to_u8
from ocrobin.cli import main

rank, out = int(os.environ["RANK"]), sys.argv[1]
batches = []
batch, run = train.Trainer.batch, train.Trainer.run


def recorded_batch(self):
    x, y = batch(self)
    batches.append(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
    return x, y


def dumped_run(self):
    path = run(self)
    params = {k: v.detach().contiguous() for k, v in self.model.named_parameters()}
    save_file(params, os.path.join(out, f"rank{rank}.safetensors"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"batches": batches, "world": self.world}, f)
    return path


train.Trainer.batch, train.Trainer.run = recorded_batch, dumped_run
sys.exit(main(sys.argv[2:]))
"""


def test_torchrun_two_processes(tmp_path):
    """Two DDP ranks draw different patches, yet end with the same weights: the ones rank 0 saves."""
    from safetensors.torch import load_file

    data = make_set(tmp_path / "d")
    out = tmp_path / "ddp" / "m"
    dump = tmp_path / "ranks"
    dump.mkdir()
    script = tmp_path / "rank_dump.py"
    script.write_text(_RANK_DUMP)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(dump), "train", "-d", str(data), "-o", str(out), "--ntrain", "16", "-b", "2",
           "--patch", "64", "--hparams", '{"widths": [8, 8, 8, 8], "head": 4}', "--no-progress", "--threads", "1"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = list((tmp_path / "ddp").glob("m-000000016-*.safetensors"))
    assert len(ck) == 1
    info = load(ck[0])
    assert info.meta["train"]["step"] == 4
    seen = [json.loads((dump / f"rank{i}.json").read_text()) for i in range(2)]
    assert [s["world"] for s in seen] == [2, 2]
    assert len(seen[0]["batches"]) == len(seen[1]["batches"]) == 4
    assert not set(seen[0]["batches"]) & set(seen[1]["batches"]), "both ranks trained on the same patches"
    w0, w1 = (load_file(str(dump / f"rank{i}.safetensors")) for i in range(2))
    saved = dict(info.model.named_parameters())
    assert w0.keys() == w1.keys() == saved.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
        assert torch.equal(w0[k], saved[k].detach()), f"checkpoint differs from the ranks on {k}"


def test_page_norm_option_parsing():
    assert resolve_page_norm(None, None, new_model=True) == models.PAGE_NORM
    assert resolve_page_norm(None, None, new_model=False) is None  # e.g. a legacy model
    kept = {"low": 1.0, "high": 99.0, "max_gain": 3.0}
    assert resolve_page_norm(None, kept, new_model=False) == kept
    assert resolve_page_norm("none", kept, new_model=False) is None
    assert resolve_page_norm("2,98,5", kept, new_model=False) == {"low": 2.0, "high": 98.0, "max_gain": 5.0}
    for bad in ("2,98", "a,b,c", "50,10,2", "1,99,0.5"):
        with pytest.raises(UsageError, match="page-norm"):
            resolve_page_norm(bad, None, new_model=True)


def test_training_pages_are_normalised_like_the_model_and_the_setting_is_kept(tmp_path):
    root = make_set(tmp_path / "d", n=2)
    for p in (root / "S" / "img").iterdir():  # squeeze the pages to a sixth of their contrast
        a = np.asarray(Image.open(p), dtype=np.float32)
        Image.fromarray((150 + a / 6).astype(np.uint8)).save(p)
    t = Trainer(cfg(tmp_path, root, ntrain=8, val=str(root), val_every=8))
    assert t.page_norm == models.PAGE_NORM
    g = t.pools[0].pages[0].gray
    assert g.min() < 40 and np.percentile(g, 99.5) > 250
    assert t.val_pairs[0].gray.min() < 40
    path = t.run()
    assert load(path).meta["page_norm"] == models.PAGE_NORM
    assert Trainer(cfg(tmp_path / "b", root, resume=path)).page_norm == models.PAGE_NORM
    off = Trainer(cfg(tmp_path / "c", root, resume=path, page_norm="none"))
    assert off.page_norm is None and off.pools[0].pages[0].gray.min() > 100


def test_training_pages_show_bands_as_the_binarizer_does(tmp_path, monkeypatch):
    # a reverse-printed band reaches the model inverted and normalised apart, as at inference; as printed
    # only when asked
    page, (y0, y1) = page_with_band()
    root = tmp_path / "d"
    for sub in ("img", "gt"):
        (root / "S" / sub).mkdir(parents=True)
    Image.fromarray(page).save(root / "S" / "img" / "p.png")
    Image.fromarray(np.where(page < 120, 0, 255).astype(np.uint8)).save(root / "S" / "gt" / "p.png")
    shown = Trainer(cfg(tmp_path / "a", root)).pools[0].pages[0].gray
    printed = Trainer(cfg(tmp_path / "b", root, band_view=False)).pools[0].pages[0].gray
    band = np.s_[y0 + 8:y1 - 8]
    assert np.median(shown[band]) > 220 and np.median(printed[band]) < 60
    np.testing.assert_array_equal(printed, to_u8(models.normalize_page(page.astype(np.float32) / 255,
                                                                        models.PAGE_NORM)))
    seen = []
    monkeypatch.setattr("ocrobin.train.run_training", lambda c: seen.append(c.band_view))
    for flag in ([], ["--bands-as-printed"]):
        assert main(["train", "-d", str(root), "-o", str(tmp_path / "c" / "m"), *flag]) == 0
    assert seen == [True, False]


def test_blank_patches_are_paper_only():
    rng = np.random.default_rng(0)
    g, t = blank_patch(96, rng, models.PAGE_NORM)
    assert g.shape == t.shape == (96, 96) and g.dtype == np.float32
    assert not t.any() and 0.0 <= g.min() and g.max() <= 1.0 and g.std() > 0.01


def test_finetune_example_runs_end_to_end(tmp_path):
    """examples/finetune.sh: 20 pages to train on, the rest held out, scored before and after."""
    set_dir = make_set(tmp_path / "d", n=22) / "S"
    work = tmp_path / "work"
    script = Path(__file__).resolve().parents[1] / "examples" / "finetune.sh"
    env = dict(os.environ, OCROBIN=str(Path(sys.executable).parent / "ocrobin"), MODEL="lstm2-seed")
    r = subprocess.run(["bash", str(script), str(set_dir), str(work), "32"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fine-tuning on 20 pages, holding out 2" in r.stdout
    for name in ("before", "after"):
        scores = json.loads((work / f"{name}.json").read_text())
        assert len(scores["pages"]) == 2 and not scores["failed"]
    assert (work / "tuned.safetensors").is_file()


def test_scale_augmentation_resizes_patches_and_is_set_by_the_command_line(tmp_path, monkeypatch):
    from ocrobin.augment import Augment, sample_patch
    from ocrobin.train import Pair

    # one 12-px square stroke on blank paper; every other augmentation off
    gray = np.full((200, 200), 230, np.uint8)
    ink = np.zeros((200, 200), bool)
    ink[94:106, 94:106] = True
    gray[ink] = 20
    off = dict(blur=0, noise=0, jpeg=0, contrast=0, ghost=0, blank=0, frame=0)
    for s in (1.0, 2.5):
        _, t = sample_patch(Pair(gray, ink, "p"), 96, np.random.default_rng(0), Augment(scale=(s, s), **off))
        assert abs(t.sum() - (12 * s) ** 2) < 0.15 * (12 * s) ** 2
    data = make_set(tmp_path / "d", n=2)
    seen = []
    monkeypatch.setattr("ocrobin.train.run_training", lambda c: seen.append(c.augment.scale))
    assert main(["train", "-d", str(data), "-o", str(tmp_path / "m")]) == 0
    assert main(["train", "-d", str(data), "-o", str(tmp_path / "m"), "--scale", "0.8,2.5"]) == 0
    assert seen == [(0.6, 1.6), (0.8, 2.5)]
    for bad in ("2", "a,b", "2,1", "0,1"):
        assert main(["train", "-d", str(data), "-o", str(tmp_path / "m"), "--scale", bad]) == 2
