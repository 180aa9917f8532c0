"""The stage table of a bench report: the fastest counted row, its case split into stages and parts, and the
stages outside the network above 10% of the case (bookkeeping on a made-up report; no timing)."""

import pytest

from bratsx.bench.run import stage_table

PARTS = {"inference.network": 6.0, "inference.blend": 1.5, "inference.resample": 0.0, "postprocess.paste": 0.2,
         "postprocess.regions": 0.3, "postprocess.metrics": 0.5}
STAGES = {"load": 0.4, "preprocess": 0.3, "inference": 7.5, "postprocess": 1.0, "write": 0.8}


def _row(p50: float, **extra) -> dict:
    return {"case_p50_s": p50, "stages_mean_s": STAGES, "stage_parts_mean_s": PARTS, **extra}


def test_the_fastest_row_agreeing_with_fp32_is_split_into_stages_and_parts():
    report = {"peers": [], "fp32_reference": "openvino", "backends": {
        "openvino": _row(10.0),
        "openvino-bf16": _row(6.0, agreement_with_fp32_tiles={"WT": 0.999, "TC": 0.998, "ET": 0.997}),
        "openvino-int8": _row(5.0, agreement_with_fp32_tiles={"WT": 0.995, "TC": 0.989, "ET": 0.99})}}
    table = stage_table(report)
    assert table["row"] == "openvino-bf16"  # int8 is faster but below 0.99 on TC: not counted
    assert list(table["seconds"]) == ["load", "preprocess", "inference.network", "inference.blend",
                                      "inference.resample", "postprocess.paste", "postprocess.regions",
                                      "postprocess.metrics", "write"]
    assert table["case_mean_s"] == pytest.approx(10.0) and sum(table["share"].values()) == pytest.approx(1.0)
    assert table["above_10_percent"] == ["inference.blend"]  # 15%; the network's 60% is not flagged


def test_with_peers_a_row_counts_only_where_its_ratio_to_every_peer_counts():
    report = {"peers": ["nnunet"], "fp32_reference": "openvino", "backends": {
        "openvino": _row(10.0, speedup_vs_nnunet=1.5), "openvino-bf16": _row(6.0, speedup_vs_nnunet=None),
        "nnunet": {"case_p50_s": 15.0}}}
    assert stage_table(report)["row"] == "openvino"
    report["backends"]["openvino"]["speedup_vs_nnunet"] = None
    assert stage_table(report) is None
