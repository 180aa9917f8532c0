#!/usr/bin/env bash
# Round 3 of the bundled model: fine-tune the shipped weights (bratsx/models/brats2018-cpu, 1200 steps of
# benchmarks/train_bundled.sh) for 600 more steps on the same 13 training cases, same network, patch and
# augmentation, with a fresh poly schedule from a halved learning rate (the first run's validation Dice was
# still rising at its end). The held-out 3 cases of benchmarks/brats2018_split.json are validated for the
# curves only: the model packaged is the run's last checkpoint, not its best, so nothing is chosen on the
# cases its card reports. A time budget (MAX_TIME, default 100m) stops the run early on a busy machine.
#
#   bash benchmarks/finetune_bundled.sh [WORK_DIR]
#
# Then `CHECKPOINT=last bash benchmarks/package_bundled.sh WORK_DIR` exports it into the package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../../shared/data/brats2018"
work=${1:-$HOME/bratsx-bundled-ft}
[ -d "$data" ] || { echo "no real data at $data" >&2; exit 1; }
mkdir -p "$work"
[ -d "$work/init-model" ] || cp -r "$here/../bratsx/models/brats2018-cpu" "$work/init-model"  # the starting point, kept beside the run
command=(bratsx train "$data" --out "$work/run" --cache-dir "$work/cache" --split "$here/brats2018_split.json"
         --features 16,32,64,128 --patch 96 96 96 --batch-size 2 --amp --init "$work/init-model" --lr 0.005
         --epochs 12 --iterations 50 --val-every 6 --workers 1 --seed 1 --max-time "${MAX_TIME:-100m}")
if [ "${RESUME:-0}" = 1 ]; then command+=(--resume); fi
start=$(date +%s)
"${command[@]}"
seconds=$(( $(date +%s) - start ))
python3 "$here/summarize_run.py" "$work/run" --command "${command[*]}" --seconds "$seconds" \
    --out "$here/results/finetune_bundled-$(date +%F).json"
