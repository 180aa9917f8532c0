"""The label set a dataset file states: MSD's and nnU-Net's ``dataset.json``.

MSD writes ``"labels": {"0": "background", "1": "edema", ...}`` (value to name), nnU-Net v2 writes
``"labels": {"background": 0, "edema": 1, ...}`` (name to value; region-based datasets give lists of
values, which state no tissue and are not read). The names are matched, by meaning, against each
set of :data:`bratsx.labels.LABEL_SETS`; a file whose labels match no set, or several that read
them differently, is refused in one line rather than guessed. Sets that read every stated value alike
(2023 glioma, meningioma, metastases for 1-3) are one statement; the first in table order is taken,
and ``--labels`` chooses another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import BratsxError
from .labels import LABEL_SETS, LabelConvention, Tissue, value_meaning

__all__ = ["DATASET_JSON", "label_set_from_dataset_json"]

#: The dataset file's name, in a dataset folder (beside ``imagesTr``/``labelsTr``).
DATASET_JSON = "dataset.json"

#: Names a dataset file may give each tissue, lower case with only letters and digits kept.
_ALIASES: dict[str, frozenset[str]] = {
    Tissue.NECROTIC_CORE.name: frozenset({"netc", "ncr", "net", "ncrnet", "necrosis", "necrotic", "nonenhancingtumor",
                                          "nonenhancingtumour", "nonenhancingtumorcore", "nonenhancingtumourcore",
                                          "necroticcore", "necroticandnonenhancingtumorcore"}),
    Tissue.EDEMA.name: frozenset({"ed", "edema", "oedema", "snfh", "peritumoraledema",
                                  "surroundingnonenhancingflairhyperintensity"}),
    Tissue.ENHANCING.name: frozenset({"et", "enhancing", "enhancingtumor", "enhancingtumour", "enhancingtissue",
                                      "gdenhancingtumor", "gdenhancingtumour"}),
    "RC": frozenset({"rc", "resectioncavity", "cavity"}),
    "CC": frozenset({"cc", "cyst", "cysticcomponent"}),
}


def _meaning(name: str) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return next((meaning for meaning, names in _ALIASES.items() if key in names), None)


def _stated_values(labels: object, path: Path) -> dict[int, str] | None:
    """Value -> tissue name of a dataset file's ``labels``; None when it states regions, not tissues."""
    if not isinstance(labels, dict):
        raise BratsxError(f"{path}: 'labels' is not a mapping of label values and names")
    pairs: dict[int, str] = {}
    for key, item in labels.items():
        if isinstance(item, list):
            return None  # nnU-Net region-based training: regions as lists of values, no tissue per value
        value, name = (key, item) if isinstance(item, str) else (item, key)
        try:
            pairs[int(value)] = str(name)
        except (TypeError, ValueError):
            raise BratsxError(f"{path}: label {key!r}: {item!r} gives no integer value") from None
    return {v: n for v, n in pairs.items() if v != 0}


def label_set_from_dataset_json(folder: Path) -> LabelConvention | None:
    """The label set a dataset folder's ``dataset.json`` states, or None when it has none or states regions.

    Raises:
        BratsxError: one line: the file cannot be read or parsed, a label has no integer value, a
            name is no tissue bratsx knows, or the labels match no set (or sets that disagree).
    """
    path = Path(folder) / DATASET_JSON
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise BratsxError(f"{path}: cannot read the dataset file ({reason})") from None
    if not isinstance(document, dict) or "labels" not in document:
        return None
    stated = _stated_values(document["labels"], path)
    if not stated:
        return None
    meanings = {value: _meaning(name) for value, name in stated.items()}
    unknown = [stated[v] for v, m in meanings.items() if m is None]
    if unknown:
        raise BratsxError(f"{path}: label names {unknown} are no tissue bratsx knows; choose the set with --labels")
    matching = tuple(c for c in LABEL_SETS if all(
        value in c.allowed_values and value_meaning(c, value) == meaning for value, meaning in meanings.items()))
    if not matching:
        raise BratsxError(f"{path}: labels {stated} match no label set bratsx knows "
                          f"({', '.join(c.value for c in LabelConvention)}); choose one with --labels")
    return matching[0]  # the sets that match all read every stated value alike: the first in table order
