import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from bratsx.cases import discover_cases
from bratsx.errors import BratsxError
from bratsx.labels import OutputMode
from bratsx.network.checkpoint import load_checkpoint
from bratsx.network.unet import NetworkConfig, UNet3D
from bratsx.trainer import distributed, loop
from bratsx.trainer.cache import read_cache
from bratsx.trainer.config import TrainConfig
from bratsx.trainer.distributed import DistributedContext
from bratsx.trainer.loop import StepDone, train, wrap_model
from bratsx.trainer.loss import DeepSupervisionLoss, SegmentationLoss
from bratsx.trainer.validation import validate

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


# --- GPU branches forced on the CPU, and ranks that wait for each other -----------------------------


def test_a_cpu_started_run_resumes_on_the_cuda_branch_with_a_fresh_loss_scale(tiny_data, tmp_path, monkeypatch,
                                                                               caplog):
    options = dict(epochs=1, val_overlap=0.0)  # fp16 convolutions are slow on a CPU: validate on few tiles
    step_losses(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", **options), stop_after=2)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["scaler"] == {} and saved["precision"] == "fp32"  # a disabled scaler saves no state
    monkeypatch.setattr(loop, "_precision", lambda config, device: torch.float16)  # what CUDA decides
    with caplog.at_level(logging.WARNING, logger="bratsx.trainer.loop"):
        rest, finished = step_losses(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", **options,
                                                 resume=True))
    assert finished.stopped == "completed" and sorted(rest) == [3]
    resumed = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert resumed["precision"] == "fp16" and resumed["scaler"]["scale"] > 0
    assert "resuming a run trained in fp32 in fp16" in caplog.text


def test_an_fp16_run_resumed_in_fp32_ignores_its_loss_scale(tiny_data, tmp_path, monkeypatch):
    with monkeypatch.context() as forced:
        forced.setattr(loop, "_precision", lambda config, device: torch.float16)
        step_losses(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1), stop_after=2)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["scaler"]["scale"] > 0
    _, finished = step_losses(tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", epochs=1, resume=True))
    assert finished.stopped == "completed"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["scaler"] == {}


def test_ddp_on_cuda_binds_each_rank_to_its_local_gpu_before_nccl(monkeypatch):
    calls = []

    def init_process_group(backend, rank, world_size, device_id=None):
        calls.append(("init", backend, rank, world_size, device_id))

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", init_process_group)
    monkeypatch.setattr(distributed.dist, "new_group", lambda backend: calls.append(("new_group", backend)))
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    DistributedContext(rank=3, world=4, local_rank=1).start(torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl", 3, 4, torch.device("cuda", 1)),
                     ("new_group", "gloo")]


def test_under_torchrun_each_rank_trains_on_its_local_rank_gpu(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    config = tiny_config(tiny_data, tmp_path / "run", tmp_path / "cache", gpus=2)
    assert loop._select_device(config, DistributedContext(rank=1, world=2, local_rank=1)) == torch.device("cuda", 1)
    with pytest.raises(BratsxError, match="LOCAL_RANK 2 has no GPU: 2 CUDA GPU"):
        loop._select_device(config, DistributedContext(rank=2, world=3, local_rank=2))


def test_cudnn_autotunes_for_the_fixed_patch_on_cuda_only_and_is_restored():
    before = torch.backends.cudnn.benchmark
    with loop._cudnn_autotune(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before
    with loop._cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before


@pytest.mark.slow
def test_ddp_ranks_wait_for_a_slow_rank_0_and_validate_their_shares(tiny_data, tmp_path):
    # The default group's collectives time out after 15 s; rank 0 spends 9 s on each case it preprocesses.
    # Sharded, rank 0 builds 2 of the 4 cases (18 s) while rank 1 waits on the gloo group; before, rank 0 built
    # all 4 (36 s) while rank 1 waited in a default-group barrier and timed out.
    script = Path(__file__).with_name("ddp_slow_rank.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), str(script), str(tiny_data), str(tmp_path / "run"),
         str(tmp_path / "cache"), "15", "9"],
        capture_output=True, text=True, timeout=600, env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0: completed after 2 steps" in result.stdout and "rank 1: completed after 2 steps" in result.stdout
    # each rank validated one of the two validation cases; the combined Dice is the single-process one
    [record] = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    model = UNet3D(NetworkConfig.from_dict(state["contract"]["network"]))
    model.load_state_dict(state["model"])
    cases = {c.case_id: c for c in discover_cases(tiny_data)}
    val = read_cache([cases[c] for c in state["split"]["val"]], tmp_path / "cache")
    assert len(val) == 2
    expected = validate(model, val, (16, 16, 16), OutputMode(state["config"]["output_mode"]), torch.device("cpu"))
    for region in ("WT", "TC", "ET", "mean"):
        assert record[f"val_dice_{region}"] == pytest.approx(expected[region], abs=1e-9)


def test_training_says_which_cases_it_passes_over(tmp_path):
    from bratsx.synth import write_synthetic_dataset
    from bratsx.trainer.loop import CasesPassedOver, train

    data = tmp_path / "data"
    write_synthetic_dataset(data, cases=3, shape=(32, 32, 24), seed=5)
    unlabelled = sorted(data.iterdir())[0]
    next(unlabelled.glob("*_seg.nii.gz")).unlink()
    (data / ".hidden").mkdir()
    events = []
    config = TrainConfig(data_dir=data, run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", epochs=1,
                         iterations=1, patch=(16, 16, 16), features=(4, 8), val_fraction=0.5, workers=0)
    train(config, on_event=events.append)
    [passed] = [e for e in events if isinstance(e, CasesPassedOver)]
    assert any(unlabelled.name in line and "no label file" in line for line in passed.lines)
    assert any(".hidden" in line for line in passed.lines)
