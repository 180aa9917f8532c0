"""``bratsx demo`` as a user runs it, measured: wall time and the held-out cases' Dice, with bf16 on or off.

The demo must learn all three regions on any CPU: with bf16 off (as on a CPU without AVX512-BF16),
every held-out case should reach ET Dice > 0.5. Writes a dated JSON with the plan, the times, each
held-out case's Dice and the machine load while it ran.

    python benchmarks/demo_timing.py [--amp | --no-amp] [--busy-cores N] [--dir DIR] [--out RESULT.json]

``--busy-cores N`` runs N busy-looping processes beside the demo for its whole run, as another job on the
machine would: the step budget should leave the Dice unchanged and only the wall time longer.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import time
from pathlib import Path

from bratsx.bench.machine import machine_info
from bratsx.demo import demo_plan, run_demo


def _busy_loop() -> None:
    """Keep one core busy: the other job of a shared machine."""
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bratsx-demo-timing"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--busy-cores", type=int, default=0, help="busy-looping processes beside the demo")
    args = parser.parse_args()
    plan = demo_plan(amp=args.amp)
    hogs = [multiprocessing.Process(target=_busy_loop, daemon=True) for _ in range(args.busy_cores)]
    for hog in hogs:
        hog.start()
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        result = run_demo(args.dir, plan, overwrite=True)
    finally:
        for hog in hogs:
            hog.terminate()
    record = {
        "date": datetime.date.today().isoformat(),
        "command": f"python benchmarks/demo_timing.py {'--amp' if args.amp else '--no-amp'}"
                   + (f" --busy-cores {args.busy_cores}" if args.busy_cores else ""),
        "busy_cores": args.busy_cores,
        "plan": dataclasses.asdict(plan),
        "minutes": (time.perf_counter() - started) / 60,
        "training_minutes": result.training.seconds / 60,
        "steps": result.training.steps,
        "stopped": result.training.stopped,
        "held_out": {r.case_id: {k: r.metrics[f"dice_{k}"] for k in ("WT", "TC", "ET")} for r in result.records},
        "load_average_before_and_after": [load_before, os.getloadavg()],
        "machine": machine_info(),
    }
    record["every_case_et_above_0.5"] = all(d["ET"] > 0.5 for d in record["held_out"].values())
    text = json.dumps(record, indent=2) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
