#!/usr/bin/env bash
# Performance round 2: every table of the README's Performance section, one `bratsx bench` run per table,
# each writing benchmarks/results/round2_<table>-<date>.json (the JSON holds the load average at its start
# and end; `uptime` is printed beside each table too). Run it on a quiet machine: timings taken beside a
# training job are contended.
#
#   bash benchmarks/bench_round2.sh RUN [TABLES]
#
# RUN     the trained model: a bratsx run directory or checkpoint (e.g. /root/bratsx-bundled/run; the BraTS 2018
#         network, features 16-128, 96^3 patches); copied first, so a run still training does not change under it.
# TABLES  comma-separated, default all:
#   export   bratsx export RUN --fp16 --int8, int8 calibrated on two training cases (needed by the tables below)
#   peers    held-out cases + the real case: openvino f32/bf16/int8 and torch, tiles and box, against nnU-Net v2
#            (mirroring off) and MONAI on the same weights; Dice against the experts' labels
#   mirror   the same with mirroring on: bratsx --tta against nnU-Net's mirroring (tiles)
#   default  the real case with the default network (32-256, 128^3, random weights: speed does not depend on
#            them): openvino f32/bf16, tiles and box, against nnU-Net v2 (the <= 10 s goal's table)
# About 30-40 minutes on a quiet 2-core machine, most of it in the peers' fp32 PyTorch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../../shared/data"
run=${1:?usage: bash benchmarks/bench_round2.sh RUN [TABLES]}
tables=",${2:-export,peers,mirror,default},"
date=$(date +%F)
work=${BRATSX_ROUND2_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/bratsx-round2.XXXXXX")}
results="$here/results"
mkdir -p "$work" "$results"
export BRATSX_HOME="$work/workspace"  # an empty workspace: no default model, and the export changes no other

# The model, frozen: the best checkpoint as it is now.
checkpoint="$work/model.pt"
if [ ! -f "$checkpoint" ]; then
    if [ -d "$run" ]; then
        source=$([ -f "$run/checkpoints/best.pt" ] && echo "$run/checkpoints/best.pt" || echo "$run/checkpoints/last.pt")
    else
        source=$run
    fi
    cp "$source" "$checkpoint"
fi
folder="$work/model"

link_cases() {  # link_cases DIR ROOT CASE... : a folder of links to the named cases
    local dir=$1 root=$2
    shift 2
    mkdir -p "$dir"
    for case in "$@"; do
        [ -e "$dir/$case" ] || ln -s "$(cd "$root/$case" && pwd)" "$dir/$case"
    done
}
held_out=$(python -c "import json; print(' '.join(json.load(open('$here/brats2018_split.json'))['val']))")
link_cases "$work/calibration" "$data/brats2018" Brats18_2013_11_1 Brats18_CBICA_ABM_1  # training cases
# shellcheck disable=SC2086
link_cases "$work/peers" "$data/brats2018" $held_out
link_cases "$work/peers" "$data/real" BraTS-GLI-00001-000
link_cases "$work/real" "$data/real" BraTS-GLI-00001-000

table() {  # table NAME ARGS... : one bench run, its JSON in results/, the load beside it
    local name=$1
    shift
    echo "== round2 $name: $(uptime)"
    bratsx bench --json "$results/round2_$name-$date.json" "$@"
    echo "== round2 $name done: $(uptime)"
}

if [[ $tables == *,export,* ]]; then
    echo "== round2 export: $(uptime)"
    bratsx export "$checkpoint" --out "$folder" --fp16 --int8 --calib-dir "$work/calibration" --calib-cases 2 \
        | tee "$results/round2_export-$date.txt"
fi
if [[ $tables == *,peers,* ]]; then
    table peers --model "$folder" --cases "$work/peers" --backends openvino,openvino-bf16,openvino-int8,torch \
        --window tiles,box --compare nnunet,monai --repeat 1
fi
if [[ $tables == *,mirror,* ]]; then
    table mirror --model "$folder" --cases "$work/peers" --backends openvino,openvino-bf16,openvino-int8 \
        --window tiles --compare nnunet --tta --repeat 1
fi
if [[ $tables == *,default,* ]]; then
    mkdir -p "$work/empty-workspace"
    BRATSX_HOME="$work/empty-workspace" table default --cases "$work/real" --backends openvino,openvino-bf16 \
        --window tiles,box --compare nnunet --repeat 1  # no default model there: the random-weight default network
fi
echo "round2: results in $results (work folder $work)"
