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
#   export   bratsx export RUN --fp16 --int8, int8 calibrated on two training cases (needed by the tables below);
#            since round 3 its gate runs on the held-out cases, and a failed one ships no int8 file (then the
#            openvino-int8 rows below fail: leave them out)
#   peers    held-out cases + the real case: openvino f32/bf16/int8 and torch, tiles and box, against nnU-Net v2
#            (mirroring off) and MONAI on the same weights; Dice against the experts' labels
#   mirror   the same with mirroring on: bratsx --tta against nnU-Net's mirroring (tiles)
#   default  the real case with the default network (32-256, 128^3, random weights: speed does not depend on
#            them): openvino f32/bf16, tiles and box, against nnU-Net v2 (the <= 10 s goal's table)
# About 30-40 minutes on a quiet 2-core machine, most of it in the peers' fp32 PyTorch.
set -euo pipefail
# shellcheck source=benchmarks/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"
run=${1:?usage: bash benchmarks/bench_round2.sh RUN [TABLES]}
tables=",${2:-export,peers,mirror,default},"
bench_setup round2 "$run"
folder="$work/model"
held_out=$(python -c "import json; print(' '.join(json.load(open('$here/brats2018_split.json'))['val']))")
link_cases "$work/calibration" "$data/brats2018" Brats18_2013_11_1 Brats18_CBICA_ABM_1  # training cases
# shellcheck disable=SC2086
link_cases "$work/peers" "$data/brats2018" $held_out
# shellcheck disable=SC2086
link_cases "$work/held-out" "$data/brats2018" $held_out  # int8's gate runs on held-out cases since round 3
link_cases "$work/peers" "$data/real" BraTS-GLI-00001-000
link_cases "$work/real" "$data/real" BraTS-GLI-00001-000

table() { bench_table round2 "$@"; }

if [[ $tables == *,export,* ]]; then
    echo "== round2 export: $(uptime)"
    bratsx export "$checkpoint" --out "$folder" --fp16 --int8 --calib-dir "$work/calibration" --calib-cases 2 \
        --int8-gate-dir "$work/held-out" | tee "$results/round2_export-$date.txt"
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
