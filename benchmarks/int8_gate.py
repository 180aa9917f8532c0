"""INT8 behind the held-out gate, on a trained model: what each quantization choice buys.

Quantizes a model folder's ``model.onnx`` (default: the bundled model) once per choice, calibrating on
training cases of ``brats2018_split.json`` and gating on its validation cases (never calibrated on), exactly
as ``bratsx export --int8 --calib-dir DATA`` does for a run with that split, and records per choice: the Dice
against fp32 per region (worst held-out case, and per case), whether it passes the 0.99 gate, the
convolutions left in f32, the quantization time, and int8 tiles/s against bf16 measured right beside it (and
f32 and bf16 at the start).
The int8 files go to a scratch folder: nothing is written into the model folder.

    python benchmarks/int8_gate.py [--model FOLDER] [--data DIR] [--choices ptq-2,...] [--out FILE]

Choices: ``ptq-2`` (round 2's: NNCF post-training quantization on 2 training cases, first convolution and
output head kept in f32), ``ptq-2-all`` (the same with every convolution int8), ``ptq-6`` (6 training cases),
``ac-2`` (NNCF accuracy control, validated by Dice on its 2 calibration cases).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path

from bratsx.atomic import write_bytes_atomic
from bratsx.bench.machine import machine_info
from bratsx.bench.worker import tile_throughput
from bratsx.contract import read_onnx_contract
from bratsx.export.int8 import INT8_GATE_DICE, int8_cases, int8_gated
from bratsx.runtime.backends import OpenVinoBackend
from bratsx.workspace import bundled_models

HERE = Path(__file__).resolve().parent
#: name -> (method, calibration cases, keep the first convolution and the head in f32)
CHOICES = {"ptq-2": ("ptq", 2, True), "ptq-2-all": ("ptq", 2, False), "ptq-6": ("ptq", 6, True),
           "ac-2": ("accuracy-control", 2, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder [default: the bundled model]")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "brats2018")
    parser.add_argument("--split", type=Path, default=HERE / "brats2018_split.json")
    parser.add_argument("--choices", default=",".join(CHOICES))
    parser.add_argument("--out", type=Path,
                        default=HERE / "results" / f"int8_gate-{datetime.date.today().isoformat()}.json")
    args = parser.parse_args()
    folder = args.model or bundled_models()[0].path
    onnx_path = folder / "model.onnx"
    contract = read_onnx_contract(onnx_path)
    split = json.loads(args.split.read_text())
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
              "model": str(folder), "split": str(args.split), "gate_threshold": INT8_GATE_DICE,
              "reference": "OpenVINO f32 (INFERENCE_PRECISION_HINT f32)", "load_average": {"start": os.getloadavg()},
              "tiles_per_s": {}, "choices": {}}
    with OpenVinoBackend(onnx_path, precision="f32") as fp32, OpenVinoBackend(onnx_path, precision="bf16") as bf16:
        for name, backend in (("f32", fp32), ("bf16", bf16)):
            report["tiles_per_s"][name] = tile_throughput(backend.run, contract.patch_size, 1, 3)
        with tempfile.TemporaryDirectory(prefix="bratsx-int8-gate-") as scratch:
            for name in args.choices.split(","):
                method, count, keep_ends = CHOICES[name]
                calibration, gate, source = int8_cases(contract, Path(scratch), args.data, count, split=split)
                xml = Path(scratch) / f"{name}.xml"
                print(f"{name}: calibrating on {len(calibration)}, gating on {len(gate)} ({os.getloadavg()[0]:.1f})",
                      flush=True)
                result = int8_gated(onnx_path, xml, fp32, contract, calibration, gate, source, keep_ends=keep_ends,
                                    method=method)
                with OpenVinoBackend(xml, precision="int8") as int8:  # bf16 measured again beside it
                    tiles = tile_throughput(int8.run, contract.patch_size, 1, 3)
                    beside = tile_throughput(bf16.run, contract.patch_size, 1, 3)
                    executed = int8.convolution_precisions()
                report["choices"][name] = {
                    **result.record(str(args.data)), "tiles_per_s": tiles, "bf16_tiles_per_s_beside": beside,
                    "speed_vs_bf16_per_tile": tiles / beside,
                    "convolution_precisions": executed, "load_average_after": os.getloadavg(),
                }
                print(f"{name}: {result.gate.describe()}; {tiles:.2f} tiles/s", flush=True)
                write_bytes_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())
    report["load_average"]["end"] = os.getloadavg()
    write_bytes_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
