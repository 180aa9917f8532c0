"""Does OpenVINO gain from IR files, or should the runtime compile the exported ONNX directly?

Exports the default network (random weights, 128^3 tile) and measures, for the ONNX file and for the
IR converted from it: the time to read and compile the model (what every ``bratsx infer`` start
pays), and the time of one tile (which should be the same: both become the same OpenVINO graph).

    python benchmarks/openvino_onnx_vs_ir.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from bratsx.bench.machine import machine_info
from bratsx.network.unet import NetworkConfig, UNet3D, probabilities

HERE = Path(__file__).resolve().parent


class _WithActivation(torch.nn.Module):
    def __init__(self, network: UNet3D) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return probabilities(self.network(image), "regions")


def timed(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp())
    onnx_path = work / "model.onnx"
    model = _WithActivation(UNet3D(NetworkConfig())).eval()
    torch.onnx.export(model, (torch.zeros(1, 4, 128, 128, 128),), str(onnx_path), input_names=["image"],
                      output_names=["probabilities"], dynamo=True, verbose=False, external_data=False,
                      dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=8)}})
    core = ov.Core()
    start = time.perf_counter()
    ov.save_model(ov.convert_model(str(onnx_path)), str(work / "model.xml"))
    convert_seconds = time.perf_counter() - start
    tile = np.random.default_rng(0).standard_normal((1, 4, 128, 128, 128)).astype(np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    results, outputs = {}, {}
    for name, path in (("onnx", onnx_path), ("ir", work / "model.xml")):
        compile_seconds, compiled = timed(lambda p=path: core.compile_model(str(p), "CPU", config), args.repeat)
        start = time.perf_counter()
        outputs[name] = compiled(tile)[0]
        first = time.perf_counter() - start
        steady, _ = timed(lambda c=compiled: c(tile), args.repeat)
        results[name] = {"read_and_compile_s": round(compile_seconds, 3), "first_tile_s": round(first, 3),
                         "tile_s": round(steady, 3)}
    report = {
        "benchmark": "openvino_onnx_vs_ir",
        "date": datetime.date.today().isoformat(),
        "openvino": ov.get_version(),
        "machine": machine_info(),
        "network": "default UNet3D (32-256), 128^3 tile, batch 1, f32 precision hint",
        "onnx_to_ir_conversion_s": round(convert_seconds, 3),
        "results": results,
        "max_abs_difference_onnx_vs_ir": float(np.abs(outputs["onnx"] - outputs["ir"]).max()),
        "onnx_size_mb": round(onnx_path.stat().st_size / 1e6, 1),
        "ir_size_mb": round(((work / "model.xml").stat().st_size + (work / "model.bin").stat().st_size) / 1e6, 1),
    }
    out = HERE / "results" / f"openvino_onnx_vs_ir-{report['date']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
