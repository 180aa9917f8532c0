"""Per-case latency of ``bratsx infer`` by backend, side by side with MONAI on the same weights.

One real 240x240x155 case, the default network (random weights: speed does not depend on them),
overlap 0.5, Gaussian blending, one tile per call. bratsx runs its whole pipeline (load, crop to the
brain, z-score, tiles, labels, write) through each backend; MONAI runs as a MONAI user would: the
four volumes loaded with nibabel, z-scored on non-zero voxels per channel, ``sliding_window_inference``
over the full volume with PyTorch eager, thresholded and saved. Writes a dated JSON.

    python benchmarks/infer_latency.py [--case DIR] [--features 32,64,128,256] [--patch 128]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import tempfile
from pathlib import Path

import torch

from bratsx.bench.machine import machine_info
from bratsx.bench.monai_reference import monai_segment_case
from bratsx.cases import discover_cases
from bratsx.contract import ModelContract, read_onnx_contract
from bratsx.export.onnx_export import model_from_checkpoint
from bratsx.export.pipeline import export_model
from bratsx.runtime.backends import OpenVinoBackend, OrtBackend, TorchBackend
from bratsx.runtime.infer import InferOptions, infer_cases
from bratsx.trainer.checkpoint import save_checkpoint
from bratsx.trainer.network import NetworkConfig, UNet3D

HERE = Path(__file__).resolve().parent
DEFAULT_CASE = HERE.parents[1] / "shared" / "data" / "real" / "BraTS-GLI-00001-000"


def random_checkpoint(path: Path, features: tuple[int, ...], patch: int) -> Path:
    torch.manual_seed(0)
    network = NetworkConfig(features=features)
    contract = ModelContract((patch,) * 3, "regions", network.to_dict())
    return save_checkpoint({"contract": contract.to_dict(), "model": UNet3D(network).state_dict()}, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--features", default="32,64,128,256")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    features = tuple(int(f) for f in args.features.split(","))
    [case] = discover_cases(args.case)
    work = Path(tempfile.mkdtemp())
    checkpoint = random_checkpoint(work / "random.pt", features, args.patch)
    model = export_model(checkpoint, work / "model").onnx
    contract = read_onnx_contract(model)

    runs = {
        "bratsx ort (fp32)": lambda: OrtBackend(model),
        "bratsx openvino (f32)": lambda: OpenVinoBackend(model, precision="f32"),
        "bratsx openvino (bf16)": lambda: OpenVinoBackend(model, precision="bf16"),
        "bratsx torch (fp32)": lambda: TorchBackend(checkpoint),
    }
    results = {}
    for name, make in runs.items():
        backend = make()
        options = InferOptions(overlap=0.5, sw_batch=1, overwrite=True)
        [result] = infer_cases([case], [backend], contract, work / name.replace(" ", "_"), options)
        if result.error:
            raise SystemExit(f"{name}: {result.error}")
        results[name] = {stage: round(value, 3) for stage, value in result.seconds.items()}
        results[name]["total"] = round(sum(result.seconds.values()), 3)
        print(name, results[name], flush=True)
    monai_out = work / "monai"
    monai_out.mkdir()
    trained = model_from_checkpoint(checkpoint)
    seconds = monai_segment_case(case, trained.network, trained.contract, monai_out, overlap=0.5)
    results["MONAI sliding_window_inference + PyTorch eager (fp32)"] = {
        **{k: round(v, 3) for k, v in seconds.items()}, "total": round(sum(seconds.values()), 3)}
    print("monai", results["MONAI sliding_window_inference + PyTorch eager (fp32)"], flush=True)
    monai_total = sum(seconds.values())
    report = {
        "benchmark": "infer_latency",
        "date": datetime.date.today().isoformat(),
        "case": case.case_id,
        "network": {"features": list(features), "patch": args.patch, "weights": "random (seed 0)"},
        "overlap": 0.5,
        "machine": machine_info(),
        "seconds": results,
        "speedup_vs_monai": {name: round(monai_total / r["total"], 2) for name, r in results.items()
                             if not name.startswith("MONAI")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"infer_latency-{report['date']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
