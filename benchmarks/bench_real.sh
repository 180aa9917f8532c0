#!/usr/bin/env bash
# The per-case performance table of the README: bratsx bench on the real BraTS 2023 case of
# ../shared/data/real (240x240x155, LPS), overlap 0.5, each backend against MONAI's
# sliding_window_inference + PyTorch eager on the same weights. Without MODEL: the default network
# with random weights (speed does not depend on them); with MODEL (a run directory, checkpoint or
# model folder): those weights, which also gives a meaningful agreement with MONAI.
# Writes benchmarks/results/bench_real-<date>.json (bench_real_trained-<date>.json with MODEL).
#
#   bash benchmarks/bench_real.sh [BACKENDS] [MODEL]      (default backends: ort,openvino,openvino-bf16,torch)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
real="$here/../../shared/data/real/BraTS-GLI-00001-000"
[ -d "$real" ] || { echo "no real case at $real" >&2; exit 1; }
cases=$(mktemp -d)
trap 'rm -rf "$cases"' EXIT
ln -s "$(cd "$real" && pwd)" "$cases/BraTS-GLI-00001-000"
model=()
name=bench_real
if [ -n "${2:-}" ]; then model=(--model "$2"); name=bench_real_trained; fi
bratsx bench --cases "$cases" --backends "${1:-ort,openvino,openvino-bf16,torch}" --compare monai --repeat 1 \
    "${model[@]}" --json "$here/results/$name-$(date +%F).json"
