#!/usr/bin/env bash
# "Shown to learn", real data: the 16 labelled BraTS 2018 cases of ../shared/data/brats2018, split
# 13 train / 3 validation by benchmarks/brats2018_split.json, trained on the CPU in the background
# for at most MAX_TIME (default 95m; the issue allows 2 h). A smaller network than the default
# (features 16-128, 96^3 patches, bf16 autocast) so that a 2-core CPU makes progress in that time.
# Writes benchmarks/results/train_brats2018-<date>.json.
#
#   bash benchmarks/train_brats2018.sh [WORK_DIR] [MAX_TIME]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../../shared/data/brats2018"
work=${1:-/tmp/bratsx-train-brats2018}
max_time=${2:-95m}
[ -d "$data" ] || { echo "no real data at $data" >&2; exit 1; }
mkdir -p "$work"
rm -rf "$work/run"
command=(bratsx train "$data" --out "$work/run" --cache-dir "$work/cache" --split "$here/brats2018_split.json"
         --features 16,32,64,128 --patch 96 96 96 --batch-size 2 --amp
         --epochs 60 --iterations 50 --val-every 5 --workers 1 --max-time "$max_time" --seed 0)
start=$(date +%s)
"${command[@]}"
seconds=$(( $(date +%s) - start ))
python3 "$here/summarize_run.py" "$work/run" --command "${command[*]}" --seconds "$seconds" \
    --out "$here/results/train_brats2018-$(date +%F).json"
