#!/usr/bin/env bash
# Performance round 3 (the bundled model's part): one command for every round-3 table, each into a dated file
# in benchmarks/results/ (the JSON reports hold the load average at their start and end; `uptime` is printed
# beside each step). Run it on a quiet machine: timings taken beside a training job are contended.
#
#   bash benchmarks/bench_round3.sh RUN [TABLES]
#
# RUN     the trained model: a bratsx run directory or checkpoint (the bundled model's run, e.g.
#         ~/bratsx-bundled/run: BraTS 2018, features 16-128, 96^3 patches, split benchmarks/brats2018_split.json);
#         copied first, so a run still training does not change under it.
# TABLES  comma-separated, default export,int8,peaks,peers:
#   export   bratsx export RUN --fp16 --int8: int8 calibrated on 2 training cases of the split and gated on its 3
#            held-out cases (--int8-gate-dir; method $INT8_METHOD, default ptq); a failed gate ships no int8 file
#            (round3_export-<date>.txt says why)
#   int8     benchmarks/int8_gate.py on the exported model: each int8 choice (ptq on 2 or 6 training cases, with
#            or without the first/last convolution in f32, NNCF accuracy control) against the held-out gate,
#            and int8 tiles/s against bf16 (round3_int8_gate-<date>.json)
#   peaks    the measured (OpenVINO/oneDNN: MatMul and 3D convolution, f32/bf16/int8) and theoretical peaks
#            (round3_peaks-<date>.json; every bench report below records them too)
#   peers    the 3 held-out cases and the real case: openvino f32/bf16, openvino-int8 when its gate passed, torch;
#            tiles; against nnU-Net v2 on the same weights (mirroring off); the stage table of the fastest
#            counted row (round3_peers-<date>.json)
#   mirror   the same with mirroring on, against nnU-Net's mirroring (round3_mirror-<date>.json; not by default)
#   fullsize the full-size nnU-Net model (NNUNET_RESULTS: its results folder, from benchmarks/nnunet_fullsize.py):
#            bratsx import nnunet --folds 0 --int8 (calibrated on 2 training cases, gated on the 3 held-out ones), then
#            the peers' cases on ort, openvino f32/bf16 (and int8 when its gate passed) against nnUNetPredictor on the
#            same results folder, mirroring off (round3_fullsize-<date>.json; not by default: ~30 minutes)
#   fullsize-mirror  the same with mirroring on, on the real case only (round3_fullsize_mirror-<date>.json)
# About 20-30 minutes on a quiet 2-core machine for the default tables (nnU-Net's fp32 PyTorch is most of it).
set -euo pipefail
# shellcheck source=benchmarks/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"
run=${1:?usage: bash benchmarks/bench_round3.sh RUN [TABLES]}
tables=",${2:-export,int8,peaks,peers},"
bench_setup round3 "$run"
folder="$work/model"
split() {  # split train|val : the split's case ids
    python -c "import json, sys; print(' '.join(json.load(open(sys.argv[1]))[sys.argv[2]]))" \
        "$here/brats2018_split.json" "$1"
}
# shellcheck disable=SC2046
link_cases "$work/train" "$data/brats2018" $(split train)
# shellcheck disable=SC2046
link_cases "$work/held-out" "$data/brats2018" $(split val)
# shellcheck disable=SC2046
link_cases "$work/peers" "$data/brats2018" $(split val)
link_cases "$work/peers" "$data/real" BraTS-GLI-00001-000

table() { bench_table round3 "$@"; }

if [[ $tables == *,export,* ]]; then
    echo "== round3 export: $(uptime)"
    bratsx export "$checkpoint" --out "$folder" --fp16 --int8 --calib-dir "$work/train" --calib-cases 2 \
        --int8-gate-dir "$work/held-out" --int8-method "${INT8_METHOD:-ptq}" \
        | tee "$results/round3_export-$date.txt"
fi
if [[ $tables == *,int8,* ]]; then
    echo "== round3 int8: $(uptime)"
    python "$here/int8_gate.py" --model "$folder" --data "$data/brats2018" \
        --out "$results/round3_int8_gate-$date.json"
fi
if [[ $tables == *,peaks,* ]]; then
    echo "== round3 peaks: $(uptime)"
    python -c "import json, sys; from bratsx.bench.peak import machine_peaks
from bratsx.atomic import write_bytes_atomic
write_bytes_atomic(sys.argv[1], (json.dumps(machine_peaks(), indent=2) + '\n').encode())" \
        "$results/round3_peaks-$date.json"
fi
backends=openvino,openvino-bf16,torch
[ -f "$folder/model.int8.xml" ] && backends=openvino,openvino-bf16,openvino-int8,torch
if [[ $tables == *,peers,* ]]; then
    table peers --model "$folder" --cases "$work/peers" --backends "$backends" --window tiles --compare nnunet \
        --repeat 1
fi
if [[ $tables == *,mirror,* ]]; then
    table mirror --model "$folder" --cases "$work/peers" --backends "${backends%,torch}" --window tiles \
        --compare nnunet --tta --repeat 1
fi
if [[ $tables == *,fullsize* ]]; then
    nnunet_results=${NNUNET_RESULTS:?set NNUNET_RESULTS to the full-size nnU-Net results folder}
    fullsize="$BRATSX_HOME/models/fullsize"
    if [ ! -f "$fullsize/model.json" ]; then
        echo "== round3 fullsize import: $(uptime)"
        bratsx import nnunet "$nnunet_results" --folds 0 --name fullsize --int8 --calib-dir "$work/train" \
            --calib-cases 2 --int8-gate-dir "$work/held-out" | tee "$results/round3_fullsize_import-$date.txt"
    fi
    full_backends=ort,openvino,openvino-bf16
    [ -f "$fullsize/model.int8.xml" ] && full_backends=$full_backends,openvino-int8
fi
if [[ $tables == *,fullsize,* ]]; then
    table fullsize --model "$fullsize" --cases "$work/peers" --backends "$full_backends" --window tiles \
        --compare nnunet --repeat 1
fi
if [[ $tables == *,fullsize-mirror,* ]]; then
    link_cases "$work/real" "$data/real" BraTS-GLI-00001-000
    table fullsize_mirror --model "$fullsize" --cases "$work/real" --backends "${full_backends#ort,}" \
        --window tiles --compare nnunet --tta --repeat 1
fi
echo "round3: results in $results (work folder $work)"
