"""Training through the real CLI on real digits: run files, resume, transfer, frozen backbones, eval metrics,
and DistributedDataParallel under torchrun (two CPU processes, gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHORT_STEPS, SHORT_TRAIN, files_in, run_cli, subprocess_env, write_digit_folder

from edgeres.data.imagefolder import load_splits
from edgeres.errors import EdgeresError
from edgeres.models.checkpoint import load_checkpoint
from edgeres.progress import progress_bar
from edgeres.tasks import get_task
from edgeres.tasks.classify.data import TrainImages
from edgeres.train import TrainConfig, build_model
from edgeres.train.distributed import make_train_loader, setup_distributed
from edgeres.train.loop import train_one_epoch
from edgeres.train.optim import make_optimizer, make_scheduler

RUN_FILES = ["best.safetensors", "history.json", "last.safetensors", "train_state.pt"]


def _history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def _train_state(run: Path) -> dict:
    return torch.load(run / "train_state.pt", map_location="cpu", weights_only=True)


def _backbone(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _assert_equal_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def digits34(tmp_path_factory) -> Path:
    """Real digits 3 and 4 only, as 3-channel PNGs: a class list the ``trained_run`` model has never seen."""
    return write_digit_folder(tmp_path_factory.mktemp("digits34") / "data", digits=(3, 4), per_class=20, gray=False)


def test_short_run_writes_best_last_state_and_history(trained_run):
    assert files_in(trained_run) == RUN_FILES
    history = _history(trained_run)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["images"] == 3 * 8 for h in history)  # --max-steps 3 x --batch-size 8
    assert all(np.isfinite(h["loss"]) and 0 <= h["val_top1"] <= 100 for h in history)

    last, best = load_checkpoint(trained_run / "last.safetensors"), load_checkpoint(trained_run / "best.safetensors")
    for ckpt in (last, best):
        assert ckpt.config.arch == "resnet18"
        assert ckpt.config.class_names == ["0", "1", "2"]
        assert ckpt.config.preprocess.input_size == (32, 32)
    assert last.summary["epochs"] == 2
    assert (last.summary["train_images"], last.summary["val_images"]) == (48, 12)  # 20% of 20 per class held out
    assert last.summary["best_val_top1"] == max(h["val_top1"] for h in history)
    best_epoch = best.summary["best_epoch"]
    assert history[best_epoch - 1]["val_top1"] == max(h["val_top1"] for h in history)

    state = _train_state(trained_run)
    assert state["epoch"] == 2 and state["best"] == last.summary["best_val_top1"]


def test_eval_json_metrics_agree_with_each_other(trained_run, digits3, tmp_path):
    proc = run_cli("eval", "--model", trained_run / "best.safetensors", "--data", digits3, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)  # stdout is nothing but the JSON
    confusion = np.array(m["confusion"])
    assert m["class_names"] == ["0", "1", "2"] and confusion.shape == (3, 3)
    assert m["images"] == confusion.sum() == 60
    assert m["top1"] == pytest.approx(100.0 * np.trace(confusion) / confusion.sum())
    assert m["top5_k"] == 3 and m["top5"] == pytest.approx(100.0)  # 3 classes: the label is always in the top 3
    for i, name in enumerate(m["class_names"]):
        row = m["per_class"][name]
        assert row["images"] == confusion[i].sum() == 20
        assert row["top1"] == pytest.approx(100.0 * confusion[i, i] / confusion[i].sum())
    assert m["model"] == str(trained_run / "best.safetensors")


def test_eval_of_a_torchvision_pth_with_arch(tmp_path):
    import torchvision

    data = write_digit_folder(tmp_path / "data", per_class=2)  # foreign weights run at 224x224: keep it small
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    proc = run_cli("eval", "--model", path, "--arch", "resnet18", "--data", data, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["images"] == 6 and m["class_names"] == ["0", "1", "2"]
    assert sum(map(sum, m["confusion"])) == 6


def test_resume_continues_from_the_saved_epoch(tmp_path, digits3, trained_run):
    run = tmp_path / "run"
    proc = run_cli("train", "--data", digits3, "--out", run, *SHORT_STEPS, "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = _history(run)
    assert [h["epoch"] for h in first] == [1]

    proc = run_cli(
        "train", "--data", digits3, "--out", run, *SHORT_STEPS, "--epochs", "2", "--resume", run, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    history = _history(run)
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]  # epoch 1 kept, only 2 trained
    assert load_checkpoint(run / "last.safetensors").summary["epochs"] == 2
    state = _train_state(run)
    assert state["epoch"] == 2
    # The learning-rate schedule went on where it stopped: it ends where an uninterrupted 2-epoch run ends.
    straight = _train_state(trained_run)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(straight["optimizer"]["param_groups"][0]["lr"])

    # Resuming a finished run trains nothing and rewrites nothing.
    before = {name: (run / name).read_bytes() for name in RUN_FILES}
    proc = run_cli(
        "train", "--data", digits3, "--out", run, *SHORT_STEPS, "--epochs", "2", "--resume", run, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert {name: (run / name).read_bytes() for name in RUN_FILES} == before


def test_init_from_keeps_the_backbone_and_renews_the_head(trained_run, tmp_path):
    source = load_checkpoint(trained_run / "best.safetensors")
    cfg = TrainConfig(data=tmp_path, out=tmp_path, arch="resnet18", init_from=trained_run / "best.safetensors")

    torch.manual_seed(5)
    fresh = build_model(TrainConfig(data=tmp_path, out=tmp_path), ["3", "4"]).state_dict()
    torch.manual_seed(5)
    transferred = build_model(cfg, ["3", "4"]).state_dict()
    _assert_equal_tensors(_backbone(transferred), _backbone(source.state_dict))
    assert transferred["fc.weight"].shape == (2, 512)
    assert torch.equal(transferred["fc.weight"], fresh["fc.weight"])  # a new head, as a fresh model has

    same_classes = build_model(cfg, ["0", "1", "2"]).state_dict()
    _assert_equal_tensors(same_classes, source.state_dict)  # same classes: the head is kept too

    cfg.arch = "resnet34"
    with pytest.raises(EdgeresError, match="is a resnet18, not a resnet34"):
        build_model(cfg, ["3", "4"])


def _train_steps(model, images, steps: int = 2):
    """A couple of real SGD steps on ``images`` with the library's own loader, optimizer and schedule."""
    cfg = TrainConfig(data=Path("."), out=Path("."), img_size=32, batch_size=8, epochs=1, lr=0.1)
    dist_info = setup_distributed()
    loader = make_train_loader(TrainImages(images, cfg.preprocess()), cfg.batch_size, dist_info, seed=0)
    optimizer = make_optimizer(model, cfg)
    with progress_bar(enabled=False) as bar:
        scheduler = make_scheduler(optimizer, cfg, steps)
        loss_fn = get_task("classify").make_loss(0.0)
        train_one_epoch(model, loader, loss_fn, optimizer, scheduler, "cpu", bar, 0, max_steps=steps)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_backbone_trains_only_the_head(trained_run, digits34, tmp_path, freeze):
    images, _ = load_splits(digits34, 0.2, 0)
    cfg = TrainConfig(data=digits34, out=tmp_path, init_from=trained_run / "best.safetensors", freeze_backbone=freeze)
    model = build_model(cfg, images.class_names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_steps(model, images)
    after = model.state_dict()
    assert not torch.equal(after["fc.weight"], before["fc.weight"])  # the head learned
    backbone_same = all(torch.equal(after[k], before[k]) for k in _backbone(before))
    assert backbone_same == freeze  # frozen: weights and BatchNorm statistics untouched; else they move


def test_cli_transfer_with_frozen_backbone(trained_run, digits34, tmp_path):
    run = tmp_path / "run"
    source = trained_run / "best.safetensors"
    transfer = ["--init-from", source, "--freeze-backbone"]
    proc = run_cli("train", "--data", digits34, "--out", run, *SHORT_TRAIN, *transfer, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    old, new = load_checkpoint(source), load_checkpoint(run / "last.safetensors")
    assert new.config.class_names == ["3", "4"]
    assert new.state_dict["fc.weight"].shape == (2, 512)
    _assert_equal_tensors(_backbone(new.state_dict), _backbone(old.state_dict))
    assert new.summary["config"]["freeze_backbone"] is True


# ---- torchrun ----------------------------------------------------------------------------------------------

DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    import torch

    from edgeres.data.imagefolder import load_splits
    from edgeres.progress import progress_bar
    from edgeres.tasks import get_task
    from edgeres.tasks.classify.data import TrainImages
    from edgeres.train import TrainConfig, build_model
    from edgeres.train.distributed import make_train_loader, setup_distributed
    from edgeres.train.loop import train_one_epoch
    from edgeres.train.optim import make_optimizer, make_scheduler

    class Recording(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner, self.seen = inner, []
        def __len__(self):
            return len(self.inner)
        def __getitem__(self, i):
            self.seen.append(int(i))
            return self.inner[i]

    def sha(tensors):
        h = hashlib.sha256()
        for name, t in sorted(tensors):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    info = setup_distributed()
    torch.manual_seed(100 + info.rank)  # a different start on every rank: DDP has to make them agree
    cfg = TrainConfig(data=data, out=out, epochs=2, img_size=32, batch_size=4, max_steps_per_epoch=3)
    train_list, _ = load_splits(cfg.data, cfg.val_split, cfg.seed)
    dataset = Recording(TrainImages(train_list, cfg.preprocess()))
    loader = make_train_loader(dataset, cfg.batch_size, info, cfg.seed)
    model = build_model(cfg, train_list.class_names)
    init_hash = sha(model.named_parameters())
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, cfg.max_steps_per_epoch)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    epochs = []
    with progress_bar(enabled=False) as bar:
        for epoch in range(cfg.epochs):
            loader.sampler.set_epoch(epoch)
            dataset.seen = []
            stats = train_one_epoch(ddp, loader, get_task("classify").make_loss(0.0), optimizer, scheduler, info.device,
                                    bar, 0, max_steps=cfg.max_steps_per_epoch)
            epochs.append({"seen": dataset.seen, "images": stats["images"]})
    result = {
        "rank": info.rank, "world_size": info.world_size, "train_size": len(dataset), "epochs": epochs,
        "init_params": init_hash, "final_params": sha(model.named_parameters()),
        "final_state_dict": {k: sha([(k, v)]) for k, v in model.state_dict().items()},
    }
    (out / f"rank{info.rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()
    """
)


def _torchrun(*args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("torchrun")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # CI runs it (.ci/run: pytest -m slow)
def test_torchrun_ranks_see_disjoint_shards_and_end_identical(tmp_path, digits3):
    (tmp_path / "ddp_check.py").write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun("ddp_check.py", digits3, out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    for epoch in range(2):
        seen0, seen1 = r0["epochs"][epoch]["seen"], r1["epochs"][epoch]["seen"]
        assert len(seen0) >= 3 * 4 and len(seen1) >= 3 * 4
        assert r0["epochs"][epoch]["images"] == r1["epochs"][epoch]["images"] == 3 * 4
        assert set(seen0).isdisjoint(seen1), f"epoch {epoch + 1}: ranks shared images"
        assert all(0 <= i < r0["train_size"] for i in seen0 + seen1)
    assert r0["epochs"][0]["seen"] != r0["epochs"][1]["seen"]  # set_epoch reshuffles
    assert r0["init_params"] != r1["init_params"]  # they started apart...
    assert r0["final_params"] == r1["final_params"]  # ...and DDP made every weight identical
    # Buffers too, except BatchNorm running statistics: DDP sends rank 0's at each forward, then every rank's
    # forward updates them with its own batch. Only rank 0 (whose statistics are the ones kept) saves.
    differ = {k for k, h in r0["final_state_dict"].items() if r1["final_state_dict"][k] != h}
    assert all(k.endswith(("running_mean", "running_var")) for k in differ), sorted(differ)


def test_torchrun_cli_writes_one_set_of_checkpoints(tmp_path, digits3):
    run = tmp_path / "run"
    steps = ["--epochs", "1", "--max-steps", "2", "--img-size", "32", "--batch-size", "4", "--quiet"]
    proc = _torchrun("-m", "edgeres.cli.main", "train", "--data", digits3, "--out", run, *steps, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert files_in(run) == RUN_FILES  # rank 1 wrote nothing of its own, and no temp files are left
    assert files_in(tmp_path) == ["run"]
    history = _history(run)
    assert [h["epoch"] for h in history] == [1] and history[0]["images"] == 2 * 4  # rank 0's share
    assert load_checkpoint(run / "best.safetensors").config.class_names == ["0", "1", "2"]
    assert proc.stderr.count("best val top-1") == 1  # the summary line is printed once
