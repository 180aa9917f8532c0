"""Load time of a real 240x240x155 case and synthesis time per case.

Compares bratsx's loader (4 files in parallel, viewed in the decompressed buffer, one float32
conversion) with ISA-L and with zlib gzip decoding, against the plain nibabel recipe most scripts
use (``nib.load(f).get_fdata(dtype=np.float32)`` per file, one after another), and gzip decoding
alone with zlib and with ``indexed_gzip`` (when installed). Writes a dated JSON.

    python benchmarks/io_load.py [--case ../shared/data/real/BraTS-GLI-00001-000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from bratsx import __version__
from bratsx.bench.machine import machine_info
from bratsx.cases import discover_cases
from bratsx.imageio import load_case, use_gzip_decoder
from bratsx.labels import MODALITY_ORDER
from bratsx.synth import BRATS_SHAPE, synthesize_case, write_synthetic_dataset

HERE = Path(__file__).resolve().parent
DEFAULT_CASE = HERE.parents[1] / "shared" / "data" / "real" / "BraTS-GLI-00001-000"


def median_seconds(function, repeat: int) -> float:
    function()  # warm the page cache and imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_zlib(paths) -> list[bytes]:
    return [zlib.decompress(p.read_bytes(), wbits=31) for p in paths]


def decode_indexed_gzip(paths) -> list[bytes]:
    import indexed_gzip

    decoded = []
    for path in paths:
        with indexed_gzip.IndexedGzipFile(str(path)) as handle:
            decoded.append(handle.read())
    return decoded


def nibabel_baseline(case) -> np.ndarray:
    return np.stack([nib.load(case.images[m]).get_fdata(dtype=np.float32) for m in MODALITY_ORDER])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE, help="a real case folder")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    [case] = discover_cases(args.case)
    results = {}
    use_gzip_decoder("zlib")
    results["bratsx_load_zlib_s"] = median_seconds(lambda: load_case(case), args.repeat)
    use_gzip_decoder("isal")
    results["bratsx_load_isal_s"] = median_seconds(lambda: load_case(case), args.repeat)
    results["nibabel_get_fdata_s"] = median_seconds(lambda: nibabel_baseline(case), args.repeat)
    paths = [case.images[m] for m in MODALITY_ORDER]
    results["decode_4_files_zlib_s"] = median_seconds(lambda: decode_zlib(paths), args.repeat)
    try:
        results["decode_4_files_indexed_gzip_s"] = median_seconds(lambda: decode_indexed_gzip(paths), args.repeat)
    except ImportError:
        print("indexed_gzip not installed: skipped")
    loaded = load_case(case)
    if not np.array_equal(loaded.image, nibabel_baseline(case).transpose(0, 3, 2, 1)):  # LPS input: (z, y, x)
        raise SystemExit("bratsx and nibabel loaded different voxels")

    results["synthesize_s"] = median_seconds(lambda: synthesize_case(BRATS_SHAPE, seed=0, index=1), 3)
    scratch = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        write_synthetic_dataset(scratch, cases=3, shape=BRATS_SHAPE, seed=0)
        results["synthesize_and_write_per_case_s"] = (time.perf_counter() - start) / 3
    finally:
        shutil.rmtree(scratch)

    report = {
        "benchmark": "io_load",
        "date": datetime.date.today().isoformat(),
        "bratsx": __version__,
        "case": case.case_id,
        "shape": list(loaded.geometry.shape),
        "machine": machine_info(),
        "results": {k: round(v, 4) for k, v in results.items()},
        "speedup_isal_vs_zlib": round(results["bratsx_load_zlib_s"] / results["bratsx_load_isal_s"], 2),
        "speedup_bratsx_vs_nibabel": round(results["nibabel_get_fdata_s"] / results["bratsx_load_isal_s"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"io_load-{report['date']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
