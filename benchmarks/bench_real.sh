#!/usr/bin/env bash
# The performance table of the README: bratsx bench on the real BraTS 2023 case of ../shared/data/real
# (240x240x155, LPS), default network with random weights (speed does not depend on them), overlap
# 0.5, each backend against MONAI's sliding_window_inference + PyTorch eager on the same weights.
# Writes benchmarks/results/bench_real-<date>.json.
#
#   bash benchmarks/bench_real.sh [BACKENDS]      (default: ort,openvino,openvino-bf16,torch)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
real="$here/../../shared/data/real/BraTS-GLI-00001-000"
[ -d "$real" ] || { echo "no real case at $real" >&2; exit 1; }
cases=$(mktemp -d)
ln -s "$(cd "$real" && pwd)" "$cases/BraTS-GLI-00001-000"
bratsx bench --cases "$cases" --backends "${1:-ort,openvino,openvino-bf16,torch}" --compare monai --repeat 1 \
    --json "$here/results/bench_real-$(date +%F).json"
