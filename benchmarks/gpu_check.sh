#!/usr/bin/env bash
# The GPU check: one script for a machine with an NVIDIA GPU and PyTorch (no TensorRT, no ONNX Runtime GPU
# build, no internet needed), about 5-8 minutes on one H100. It runs
#   1. the gpu-marked tests;
#   2. bratsx bench --device cuda on the real case: torch fp32 and torch-amp (fp16 autocast), eager,
#      against MONAI's sliding_window_inference on the same GPU and weights; then torch-amp again with
#      channels_last_3d + torch.compile + CUDA graphs (--torch-options), each row in its own process;
#   3. a short AMP training run of the default network (it/s, peak GPU memory);
# and writes one JSON, benchmarks/results/gpu_check-<date>.json, with every part's numbers and status.
# On a machine without a CUDA GPU it says so and exits 3 without measuring anything.
#
#   bash benchmarks/gpu_check.sh [MODEL]    (MODEL: a run directory, checkpoint or model folder; default: the
#                                            default network with random weights: speed does not depend on them)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
python=${PYTHON:-python}
model=${1:-}

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU is visible to PyTorch on this machine (nvidia-smi: $(command -v nvidia-smi || echo absent))." >&2
    echo "gpu_check: nothing was measured and no result was written; run this script on a machine with an NVIDIA GPU." >&2
    exit 3
fi

stamp=$(date +%F-%H%M)
work=$(mktemp -d "${TMPDIR:-/tmp}/bratsx-gpu-check.XXXXXX")
out="$here/results/gpu_check-$stamp.json"
real="$repo/../shared/data/real/BraTS-GLI-00001-000"
cases="$work/cases"
mkdir -p "$cases"
if [ -d "$real" ]; then
    ln -s "$(cd "$real" && pwd)" "$cases/BraTS-GLI-00001-000"
    cases_note="real case BraTS-GLI-00001-000"
else
    "$python" -c "from bratsx.synth import write_synthetic_dataset as w; w('$cases', 1, seed=7)"
    cases_note="one synthetic 240x240x155 case (no real case at $real)"
fi
model_args=()
[ -n "$model" ] && model_args=(--model "$model")

echo "== 1/4 gpu-marked tests"
start=$SECONDS
(cd "$repo" && timeout 150 "$python" -m pytest -m gpu -q -p no:cacheprovider) >"$work/tests.log" 2>&1
tests_rc=$?
tests_s=$((SECONDS - start))
tail -3 "$work/tests.log"

echo "== 2/4 bench: torch fp32 and fp16 (eager) against MONAI on the same GPU"
start=$SECONDS
timeout 240 bratsx bench --device cuda --cases "$cases" "${model_args[@]}" --backends torch,torch-amp \
    --compare monai --repeat 2 --json "$work/bench_eager.json"
eager_rc=$?
eager_s=$((SECONDS - start))

echo "== 3/4 bench: torch-amp with channels_last_3d, torch.compile and CUDA graphs"
start=$SECONDS
timeout 180 bratsx bench --device cuda --cases "$cases" "${model_args[@]}" --backends torch-amp \
    --torch-options channels_last,compile,cuda_graphs --compare monai --repeat 2 --json "$work/bench_compiled.json"
compiled_rc=$?
compiled_s=$((SECONDS - start))

echo "== 4/4 a short AMP training run of the default network"
start=$SECONDS
timeout 150 "$python" - "$work" >"$work/train.json" 2>"$work/train.log" <<'EOF'
import json, sys, time
from pathlib import Path

import torch

from bratsx.synth import write_synthetic_dataset
from bratsx.trainer.config import TrainConfig
from bratsx.trainer.loop import train

work = Path(sys.argv[1])
write_synthetic_dataset(work / "train-data", 4, shape=(160, 160, 128), seed=3)
config = TrainConfig(data_dir=work / "train-data", run_dir=work / "train-run", cache_dir=work / "train-cache",
                     epochs=2, iterations=25, gpus=1, amp=True, workers=2, val_every=100, val_fraction=0.25)
start = time.perf_counter()
train(config)
wall = time.perf_counter() - start
metrics = [json.loads(line) for line in (work / "train-run" / "metrics.jsonl").read_text().splitlines() if line]
print(json.dumps({"config": "default network (32-256), patch 128^3, batch 2, AMP fp16, 2 epochs x 25 iterations",
                  "wall_s": wall, "it_per_s_by_epoch": [m.get("it_per_s") for m in metrics],
                  "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20, "gpu": torch.cuda.get_device_name(0)}))
EOF
train_rc=$?
train_s=$((SECONDS - start))
tail -2 "$work/train.log"

"$python" - "$out" "$work" "$cases_note" "$tests_rc" "$tests_s" "$eager_rc" "$eager_s" "$compiled_rc" "$compiled_s" \
    "$train_rc" "$train_s" <<'EOF'
import datetime, json, sys
from pathlib import Path

out, work, cases_note = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
codes = dict(zip(("tests", "bench_eager", "bench_compiled", "train"), map(int, sys.argv[4::2])))
seconds = dict(zip(codes, map(int, sys.argv[5::2])))

def read(name):
    path = work / name
    try:
        return json.loads(path.read_text().strip().splitlines()[-1] if name.endswith("train.json") else path.read_text())
    except (OSError, ValueError, IndexError):
        return None

import torch
report = {
    "date": datetime.datetime.now().isoformat(timespec="seconds"), "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__, "cuda": torch.version.cuda, "cases": cases_note,
    "status": {part: "ok" if code == 0 else f"failed (exit {code})" for part, code in codes.items()},
    "seconds": seconds,
    "tests_tail": (work / "tests.log").read_text().strip().splitlines()[-3:],
    "bench_eager": read("bench_eager.json"), "bench_compiled": read("bench_compiled.json"),
    "train": read("train.json"),
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=2) + "\n")
print(f"gpu_check: {out}")
for part, state in report["status"].items():
    print(f"  {part}: {state} ({seconds[part]} s)")
EOF
[ "$tests_rc" -eq 0 ] && [ "$eager_rc" -eq 0 ] && [ "$compiled_rc" -eq 0 ] && [ "$train_rc" -eq 0 ]
