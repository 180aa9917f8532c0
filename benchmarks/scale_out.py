"""Scale-out on one machine: 1 worker vs 2 worker processes vs Ray Data, on the same real-size cases.

Runs each configuration in a process tree of its own (so that each process's peak memory is its own, and
its CPU time, which other jobs on a shared machine disturb less than wall time, can be counted),
samples the peak resident memory (VmHWM) of every process of that tree, and for Ray the object-store
memory in use (cluster total minus available, sampled by the driver) and the growth of /dev/shm. Cases
per minute count the cases over the wall time of the whole run, model opening, worker start and
Ray start included, and also between the first and the last case finished (steady state). The
outputs of the three runs are compared byte for byte. Writes a dated JSON into benchmarks/results/.

    python benchmarks/scale_out.py [--model MODEL] [--backend openvino] [--work /tmp/scale_out]

Without --model, the default network is exported with random weights (seed 0), as ``bratsx bench``
does: the speed is that of a real model of that architecture, the segmentations are meaningless.
Inputs are read in place (read-only): the two cases of ../shared/data/real and the first six of
../shared/data/brats2018, linked into WORK/cases.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
MODES = ("one-worker", "two-workers", "ray")


def link_cases(work: Path) -> Path:
    """WORK/cases: links to the 2 real cases and the first 6 BraTS 2018 cases."""
    folder = work / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    chosen = sorted((SHARED / "real").iterdir()) + sorted((SHARED / "brats2018").iterdir())[:6]
    for case in chosen:
        link = folder / case.name
        if not link.exists():
            link.symlink_to(case, target_is_directory=True)
    return folder


def export_random_model(work: Path) -> Path:
    """The default network with random weights (seed 0), exported as bratsx bench does."""
    import torch

    from bratsx.contract import ModelContract
    from bratsx.export.pipeline import export_model
    from bratsx.network.checkpoint import save_checkpoint
    from bratsx.network.unet import NetworkConfig, UNet3D

    if (work / "model" / "model.onnx").is_file():
        return work / "model"
    torch.manual_seed(0)
    network = NetworkConfig()
    contract = ModelContract((128, 128, 128), "regions", network.to_dict())
    checkpoint = save_checkpoint({"contract": contract.to_dict(), "model": UNet3D(network).state_dict()},
                                 work / "random-weights.pt")
    export_model(checkpoint, work / "model")
    return work / "model"


def run_mode(mode: str, cases_dir: Path, model: Path, backend: str, out: Path, overlap: float) -> dict[str, Any]:
    """One configuration, in this process (the child): returns wall time, records and Ray's object-store peak."""
    from bratsx.cases import discover_cases
    from bratsx.runtime import InferOptions, ModelSpec, RunnerSpec, SegmentOptions, run_batch

    cases = discover_cases(cases_dir)
    options = InferOptions(overwrite=True)
    started = time.perf_counter()
    store: dict[str, float] = {}
    with RunnerSpec(ModelSpec(paths=(model,), backend=backend), SegmentOptions(overlap=overlap)).open() as runner:
        if mode == "one-worker":  # opened once in the parent first, as bratsx infer does
            records = run_batch(cases, runner, out, options).records
    if mode == "two-workers":
        from bratsx.runtime.parallel import Processes, worker_slots

        records = run_batch(cases, runner, out, options, scheduler=Processes(worker_slots(2))).records
    elif mode == "ray":
        import logging

        import ray

        from bratsx.runtime.ray_runner import Ray

        for attempt in range(3):  # on a loaded machine the raylet may miss Ray's 30 s start-up deadline
            try:
                ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
        total = ray.cluster_resources()["object_store_memory"]
        shm_before = _shm_used()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                used = total - ray.available_resources().get("object_store_memory", total)
                store["object_store_peak_mb"] = max(store.get("object_store_peak_mb", 0.0), used / 2**20)
                store["dev_shm_growth_mb"] = max(store.get("dev_shm_growth_mb", 0.0), _shm_used() - shm_before)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        records = run_batch(cases, runner, out, options, scheduler=Ray()).records
        stop.set()
        store["object_store_capacity_mb"] = total / 2**20
        ray.shutdown()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "records": [json.loads(r.to_json()) for r in records], **store}


def _shm_used() -> float:
    stats = os.statvfs("/dev/shm")
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize / 2**20


def _status(pid: int) -> dict[str, str] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {"name": fields["Name"].strip(), "ppid": fields["PPid"].strip(), "hwm": fields.get("VmHWM", "0 kB"),
            "command": command[:120]}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _descendants(root: int) -> dict[int, dict[str, str]]:
    table = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _status(int(p)))}
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, status in table.items():
            if int(status["ppid"]) == parent and pid not in found:
                found[pid] = status
                frontier.append(pid)
    return found


def measure(mode: str, cases_dir: Path, model: Path, backend: str, work: Path, overlap: float) -> dict[str, Any]:
    """Run one mode in a child process tree, sampling every process's peak memory."""
    out = work / f"out-{mode}"
    child = subprocess.Popen([sys.executable, __file__, "--child", mode, "--model", str(model), "--backend", backend,
                              "--work", str(work), "--cases", str(cases_dir), "--overlap", str(overlap)],
                             stdout=subprocess.PIPE, text=True)
    peaks: dict[int, dict[str, Any]] = {}
    load_before = os.getloadavg()
    while True:
        for pid, status in {child.pid: _status(child.pid), **_descendants(child.pid)}.items():
            if status is None:
                continue
            mb = int(status["hwm"].split()[0]) / 1024
            entry = peaks.setdefault(pid, {"name": status["name"], "command": status["command"], "peak_rss_mb": 0.0,
                                           "cpu_s": 0.0})
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], mb)
            entry["cpu_s"] = max(entry["cpu_s"], _cpu_seconds(pid))
        ended, status, usage = os.wait4(child.pid, os.WNOHANG)
        if ended:
            break
        time.sleep(0.5)
    lines = child.stdout.read().strip().splitlines()
    if not lines or os.waitstatus_to_exitcode(status) != 0:
        return {"error": f"the {mode} run failed (exit code {os.waitstatus_to_exitcode(status)}); see its stderr"}
    result = json.loads(lines[-1])
    # Reaped descendants are in the rusage, but Ray's workers are not reaped by the child: the sampled CPU
    # time of every process of the tree (up to its last sample, 0.5 s before it ended) covers them.
    cpu_s = max(usage.ru_utime + usage.ru_stime, sum(entry["cpu_s"] for entry in peaks.values()))
    finished = sorted(datetime.datetime.fromisoformat(r["finished"]) for r in result["records"] if r["finished"])
    steady = (finished[-1] - finished[0]).total_seconds() if len(finished) > 1 else None
    ok = sum(r["status"] == "ok" for r in result["records"])
    processes = sorted(({"pid": pid, **entry} for pid, entry in peaks.items() if entry["peak_rss_mb"] > 50),
                       key=lambda e: -e["peak_rss_mb"])
    return {
        "cases_ok": ok, "wall_s": result["wall_s"], "cases_per_min": 60 * ok / result["wall_s"],
        "cpu_s": cpu_s, "cpu_s_per_case": cpu_s / max(ok, 1),
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "steady_cases_per_min": 60 * (ok - 1) / steady if steady else None,
        "mean_case_seconds": {stage: sum(r["seconds"].get(stage, 0) for r in result["records"]) / len(result["records"])
                              for stage in ("load", "preprocess", "inference", "postprocess", "write")},
        "processes": processes,
        **{k: v for k, v in result.items() if k not in ("records", "wall_s")},
        "out": str(out),
    }


def identical(work: Path) -> dict[str, bool]:
    """Whether each mode's outputs equal the one-worker run's, byte for byte."""
    first = sorted((work / "out-one-worker").glob("*.nii.gz"))
    return {mode: all((work / f"out-{mode}" / p.name).read_bytes() == p.read_bytes() for p in first) and bool(first)
            for mode in MODES[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder or .onnx [default: default network, random]")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale_out"))
    parser.add_argument("--cases", type=Path, help="cases folder [default: the 8 cases above, linked into WORK/cases]")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap [default: 0.5]")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile, for the record")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_mode(args.child, args.cases, args.model, args.backend, args.work / f"out-{args.child}",
                          args.overlap)
        print(json.dumps(result))
        return

    from bratsx import __version__
    from bratsx.bench.machine import machine_info

    cases_dir = args.cases or link_cases(args.work)
    model = args.model or export_random_model(args.work)
    results = {mode: measure(mode, cases_dir, model, args.backend, args.work, args.overlap)
               for mode in args.modes.split(",")}
    report = {
        "bratsx": __version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(), "cases": sorted(p.name for p in cases_dir.iterdir()),
        "backend": args.backend, "overlap": args.overlap,
        "model": str(args.model) if args.model else "default network, random weights (seed 0)",
        "note": args.note,
        "modes": results,
    }
    if all(results.get(mode, {}).get("cases_ok") for mode in MODES):
        base = results["one-worker"]["cases_per_min"]
        report["ratios_to_one_worker"] = {mode: results[mode]["cases_per_min"] / base for mode in MODES[1:]}
        report["ray_vs_local"] = results["ray"]["cases_per_min"] / base
        report["cpu_s_per_case_ratios_to_one_worker"] = {
            mode: results[mode]["cpu_s_per_case"] / results["one-worker"]["cpu_s_per_case"] for mode in MODES[1:]}
        report["outputs_identical_to_one_worker"] = identical(args.work)
    target = HERE / "results" / f"scale_out-{datetime.date.today().isoformat()}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "modes"}, indent=2))
    for mode, entry in results.items():
        if "error" in entry:
            print(mode, entry["error"])
            continue
        print(mode, f"{entry['cases_per_min']:.2f} cases/min", f"steady {entry['steady_cases_per_min']}",
              f"{entry['cpu_s_per_case']:.0f} CPU s/case",
              [(p["command"][:60], round(p["peak_rss_mb"])) for p in entry["processes"]][:8])
    print(target)


if __name__ == "__main__":
    main()
