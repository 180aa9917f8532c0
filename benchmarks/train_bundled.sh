#!/usr/bin/env bash
# The bundled model (bratsx/models/brats2018-cpu): trained on the 16 labelled BraTS 2018 cases of
# ../shared/data/brats2018 with the fixed split benchmarks/brats2018_split.json (13 train / 3 held out),
# on a 2-core CPU with bf16 autocast. A CPU-sized network (features 16-128, 96^3 patches): about 1.5 M
# parameters, so the fp32 ONNX is ~6 MB. The step count is fixed (the poly learning-rate schedule ends at
# zero), so an interrupted run resumes exactly with `RESUME=1 bash benchmarks/train_bundled.sh`.
# The bundled weights were started with --epochs 30 and, to fit the session they were trained in, resumed
# at step 251 with --epochs 24 (the schedule then decays to zero at step 1200): this script, with 24
# epochs from the start, differs from that run only in the learning rate of its first 250 steps.
#
#   bash benchmarks/train_bundled.sh [WORK_DIR]
#
# Then `bash benchmarks/package_bundled.sh WORK_DIR` exports it into the package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../../shared/data/brats2018"
work=${1:-$HOME/bratsx-bundled}
[ -d "$data" ] || { echo "no real data at $data" >&2; exit 1; }
mkdir -p "$work"
command=(bratsx train "$data" --out "$work/run" --cache-dir "$work/cache" --split "$here/brats2018_split.json"
         --features 16,32,64,128 --patch 96 96 96 --batch-size 2 --amp
         --epochs 24 --iterations 50 --val-every 5 --workers 1 --seed 0)
if [ "${RESUME:-0}" = 1 ]; then command+=(--resume); fi
start=$(date +%s)
"${command[@]}"
seconds=$(( $(date +%s) - start ))
python3 "$here/summarize_run.py" "$work/run" --command "${command[*]}" --seconds "$seconds" \
    --out "$here/results/train_bundled-$(date +%F).json"
