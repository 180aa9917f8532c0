#!/usr/bin/env bash
# Put the bundled model into the package: export a checkpoint of benchmarks/train_bundled.sh's (or
# finetune_bundled.sh's) run into bratsx/models/brats2018-cpu (fp32 ONNX, and fp16 gated on the 3 held-out BraTS 2018 cases), then
# record its held-out evaluation (bratsx infer on those cases and on ../shared/data/real) in
# benchmarks/results/bundled_model-<date>.json.
#
#   [CHECKPOINT=best|last] bash benchmarks/package_bundled.sh [WORK_DIR]   (default: ~/bratsx-bundled, best)
#
# CHECKPOINT=last exports the run's final weights: the choice for a run whose validation cases are the ones the
# card reports (finetune_bundled.sh), so that no checkpoint is chosen on them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$HOME/bratsx-bundled}
data="$here/../../shared/data"
target="$here/../bratsx/models/brats2018-cpu"
checkpoint=${CHECKPOINT:-best}
[ -f "$work/run/checkpoints/$checkpoint.pt" ] || { echo "no $checkpoint.pt in $work/run/checkpoints" >&2; exit 1; }
source_run="$work/run"
if [ "$checkpoint" = last ]; then source_run="$work/run/checkpoints/last.pt"; fi
held_out=$(mktemp -d)
trap 'rm -rf "$held_out"' EXIT
for case in $(python3 -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['val']))" \
              "$here/brats2018_split.json"); do
    ln -s "$(cd "$data/brats2018/$case" && pwd)" "$held_out/$case"
done
rm -rf "$target"
# fp16 only where its gate passes on the held-out cases; otherwise the fp32 model alone, and the refusal recorded
if ! bratsx export "$source_run" --out "$target" --fp16 --calib-dir "$held_out" --calib-cases 3 --workspace "$work" \
        2> "$work/fp16_gate.txt"; then
    cat "$work/fp16_gate.txt" >&2
    bratsx export "$source_run" --out "$target" --workspace "$work"
fi
python3 "$here/bundled_model_card.py" "$target" --run "$work/run" --checkpoint "$checkpoint" --held-out "$held_out" --real "$data/real" \
    --fp16-gate "$work/fp16_gate.txt" --out "$here/results/bundled_model-$(date +%F).json"
