#!/usr/bin/env bash
# "Shown to learn", synthetic: 24 synthetic cases of 96x96x80, 6 held out, at most 20 minutes of
# CPU training. Writes benchmarks/results/train_synthetic-<date>.json with the command, the time,
# the validation Dice per region, it/s and the data-wait fraction.
#
#   bash benchmarks/train_synthetic.sh [WORK_DIR]      (default: /tmp/bratsx-train-synthetic)
set -euo pipefail
work=${1:-/tmp/bratsx-train-synthetic}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"

[ -d "$work/data" ] || bratsx synth "$work/data" --cases 24 --shape 96 96 80 --seed 2026
rm -rf "$work/run"
command=(bratsx train "$work/data" --out "$work/run" --cache-dir "$work/cache"
         --features 16,32,64,128 --patch 64 64 64 --batch-size 2 --amp
         --epochs 30 --iterations 50 --val-every 5 --val-fraction 0.25
         --workers 1 --max-time 19m --seed 0)
start=$(date +%s)
"${command[@]}"
seconds=$(( $(date +%s) - start ))

python3 "$here/summarize_run.py" "$work/run" --command "${command[*]}" --seconds "$seconds" \
    --out "$here/results/train_synthetic-$(date +%F).json"
