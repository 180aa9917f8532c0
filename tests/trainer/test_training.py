import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from bratsx.errors import BratsxError
from bratsx.trainer.checkpoint import load_checkpoint
from bratsx.trainer.config import TrainConfig
from bratsx.trainer.distributed import DistributedContext
from bratsx.trainer.loop import StepDone, train, wrap_model
from bratsx.trainer.loss import DeepSupervisionLoss, SegmentationLoss
from bratsx.trainer.network import NetworkConfig, UNet3D

TINY = dict(epochs=2, iterations=3, patch=(16, 16, 16), features=(4, 8, 16), batch_size=2, val_every=1,
            val_fraction=0.25, workers=0, seed=5)


def tiny_config(data, run, cache, **overrides):
    return TrainConfig(data_dir=data, run_dir=run, cache_dir=cache, **{**TINY, **overrides})


def step_losses(config, stop_after=None):
    """Run training, returning the loss of every step; optionally stop after a given step."""
    losses, stop = {}, threading.Event()

    def on_event(event):
        if isinstance(event, StepDone):
            losses[event.step] = event.loss
            if event.step == stop_after:
                stop.set()

    result = train(config, on_event=on_event, stop=stop)
    return losses, result


def test_tiny_run_writes_checkpoints_metrics_curves_and_config(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache")
    losses, result = step_losses(config)
    assert result.stopped == "completed" and result.steps == 6 and result.epochs == 2
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "lr", "it_per_s", "data_wait_fraction", "val_dice_WT", "val_dice_TC", "val_dice_ET"):
        assert key in records[-1]
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "config.json").read_text())["iterations"] == 3
    assert set(json.loads((run / "splits.json").read_text())[0]) == {"train", "val"}
    assert set(result.best_dice) == {"WT", "TC", "ET"}


def test_checkpoints_load_with_weights_only_and_hold_everything_to_resume(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache"))
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / "checkpoints" / name, map_location="cpu", weights_only=True)
        for key in ("contract", "model", "optimizer", "scaler", "scheduler", "step", "epoch", "rng", "split",
                    "config", "history"):
            assert key in state
        contract = state["contract"]
        assert contract["patch_size"] == [16, 16, 16] and contract["modality_order"] == ["flair", "t1", "t1ce", "t2"]
        assert contract["canonical_orientation"] == "SPL" and contract["channel_names"] == ["WT", "TC", "ET"]
        assert contract["normalization"].startswith("zscore")
        model = UNet3D(NetworkConfig.from_dict(contract["network"]))
        model.load_state_dict(state["model"])  # no DataParallel/DDP prefix
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 6


def test_resume_reproduces_the_uninterrupted_run_exactly(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    uninterrupted, _ = step_losses(tiny_config(tiny_data, tmp_path / "a", cache))
    first, stopped = step_losses(tiny_config(tiny_data, tmp_path / "b", cache), stop_after=4)  # mid-epoch 2
    assert stopped.stopped == "interrupted" and stopped.steps == 4
    splits_before = (tmp_path / "b" / "splits.json").read_text()
    rest, finished = step_losses(tiny_config(tiny_data, tmp_path / "b", cache, resume=True))
    assert (tmp_path / "b" / "splits.json").read_text() == splits_before
    assert finished.stopped == "completed"
    assert {**first, **rest} == uninterrupted  # every step's loss, bit for bit
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs_a = [json.loads(x)["train_loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    epochs_b = [json.loads(x)["train_loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert epochs_a == epochs_b


def test_an_existing_run_needs_resume_and_resume_refuses_changed_options(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1)
    train(config)
    with pytest.raises(BratsxError, match="--resume"):
        train(config)
    with pytest.raises(BratsxError, match="options differ.*batch_size"):
        train(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1, batch_size=1, resume=True))


def test_data_parallel_wrapping_runs_a_training_step():
    model = UNet3D(NetworkConfig(features=(4, 8, 16)))
    wrapped, description = wrap_model(model, gpus=2, device=torch.device("cpu"), distributed=DistributedContext())
    assert isinstance(wrapped, torch.nn.DataParallel) and description == "DataParallel x2"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = DeepSupervisionLoss(SegmentationLoss(), 2)(
        wrapped(torch.randn(2, 4, 16, 16, 16)), torch.randint(0, 4, (2, 16, 16, 16), dtype=torch.uint8))
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not any(k.startswith("module.") for k in model.state_dict())


def cli_args(data, run, cache, epochs, iterations, workers):
    return ["train", str(data), "--out", str(run), "--cache-dir", str(cache), "--epochs", str(epochs),
            "--iterations", str(iterations), "--patch", "16", "16", "16", "--features", "4,8,16",
            "--val-fraction", "0.25", "--val-every", "1", "--workers", str(workers), "--gpus", "0"]


def test_sigint_saves_a_loadable_last_checkpoint_and_says_how_to_resume(tiny_data, tmp_path):
    args = cli_args(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=200, iterations=2, workers=1)
    process = subprocess.Popen([sys.executable, "-m", "bratsx", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr and "SIGINT" in stderr
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert 2 <= state["step"] < 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_under_torchrun_with_gloo_trains_on_two_processes(tiny_data, tmp_path):
    args = cli_args(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1, iterations=2, workers=0)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), "-m", "bratsx", *args],
        capture_output=True, text=True, timeout=300, env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DistributedDataParallel" in result.stdout
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 1  # written by rank 0 only
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_a_time_budget_stop_mid_epoch_validates_what_it_trained(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=5, iterations=3, val_every=5,
                         max_time=1e-6)
    result = train(config)
    assert result.stopped == "time-budget" and result.steps == 1
    [record] = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert record["partial"] and record["epoch"] == 1 and "val_dice_mean" in record
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    train(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1, iterations=3, val_every=5,
                      resume=True))
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("partial", False)) for r in records] == [(1, False)]  # the partial record was redone
