"""Modalities, label sets and the tumour regions they define.

BraTS has relabelled its tissues several times (2018-2021, 2023, the 2024 post-treatment glioma set
with its resection cavity, the pediatric set of 2024), and MSD has an order of its own. Every label
set bratsx knows is one row of :data:`LABEL_SETS`: its tissue values and names, the regions its
challenge evaluates, its lesion-wise parameters and where each comes from. Nothing else in bratsx
states a label value.

A map's label set is stated (``--labels``, a layout, a dataset.json, a model's contract) or read
from its values among the sets the case could belong to (:func:`candidate_sets`); values that two
candidates read as different tissues are never guessed (:func:`detect_convention` refuses them).

Networks work with the three nested regions every set defines:

* WT, whole tumour: every tumour label (core + edema)
* TC, tumour core: necrotic/non-enhancing core + enhancing tumour (+ cystic component, pediatric 2024)
* ET, enhancing tumour

This module holds the one implementation of each conversion between a label set and the regions,
used by training, inference, evaluation and the synthetic generator alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum

import numpy as np

from .errors import BratsxError

__all__ = [
    "BRATS_CHANNELS",
    "CLASS_CONVENTION",
    "DEFAULT_CANDIDATES",
    "LABEL_SETS",
    "MODALITY_ORDER",
    "REGION_ORDER",
    "EvaluatedRegion",
    "LabelConvention",
    "LabelSet",
    "LabelSetError",
    "LesionRule",
    "Modality",
    "OutputMode",
    "Region",
    "Tissue",
    "TissueLabel",
    "candidate_sets",
    "check_channel_name",
    "convert_labels",
    "detect_convention",
    "evaluated_region_masks",
    "labels_from_regions",
    "present_values",
    "regions_from_labels",
    "regions_from_probabilities",
    "unexpected_values",
    "value_meaning",
    "with_adult_glioma",
]


class Modality(str, Enum):
    """The four MRI sequences, named as in the BraTS 2018-2021 files."""

    FLAIR = "flair"
    T1 = "t1"
    T1CE = "t1ce"
    T2 = "t2"


#: Channel order of every image array inside bratsx (and of every model's input).
MODALITY_ORDER: tuple[Modality, ...] = (Modality.FLAIR, Modality.T1, Modality.T1CE, Modality.T2)
#: The input channels a case has when no model names others: the four modalities' names, in
#: :data:`MODALITY_ORDER`. A model imported with other channels (an ADC or DWI map) names them in its contract
#: (``modality_order``), and its cases' files are found by those names (:func:`bratsx.cases.discover`).
BRATS_CHANNELS: tuple[str, ...] = tuple(m.value for m in MODALITY_ORDER)
#: What a channel name may be: it becomes part of a file name (``<id>_adc.nii.gz``), so lower-case letters and
#: digits only, and never the reference segmentation's name.
_CHANNEL_NAME = re.compile(r"[a-z0-9]+")
_RESERVED_CHANNEL_NAMES = ("seg", "label", "labels")


def check_channel_name(name: str) -> str:
    """``name`` when it can name a channel's files (see :data:`BRATS_CHANNELS`).

    Raises:
        BratsxError: anything but lower-case letters and digits, or a name a segmentation file has.
    """
    if not _CHANNEL_NAME.fullmatch(name) or name in _RESERVED_CHANNEL_NAMES:
        raise BratsxError(f"{name!r} cannot name an input channel: a channel's name is part of its files' names, so "
                          f"lower-case letters and digits only, and none of {', '.join(_RESERVED_CHANNEL_NAMES)}")
    return name


class Tissue(IntEnum):
    """Tumour sub-regions as annotated by the raters (background is 0 everywhere)."""

    NECROTIC_CORE = 1  # NCR/NET (2018-2021), NETC (2023+), "non-enhancing tumour" (MSD)
    EDEMA = 2  # ED (2018-2021), SNFH (2023+), "edema" (MSD)
    ENHANCING = 3  # ET everywhere


class Region(str, Enum):
    """The three nested evaluation regions, in the order of the model's output channels."""

    WT = "WT"
    TC = "TC"
    ET = "ET"


#: Channel order of region probabilities and region masks.
REGION_ORDER: tuple[Region, ...] = (Region.WT, Region.TC, Region.ET)


class OutputMode(str, Enum):
    """What a network's output channels are.

    * ``regions``: 3 independent sigmoid channels WT, TC, ET (the default, as in nnU-Net's BraTS setup)
    * ``labels``: 4-class softmax over background, necrotic core, edema, enhancing tumour
    """

    REGIONS = "regions"
    LABELS = "labels"

    @property
    def channels(self) -> int:
        """Number of output channels."""
        return len(REGION_ORDER) if self is OutputMode.REGIONS else 1 + len(Tissue)


#: Which tissues make up each region.
REGION_TISSUES: dict[Region, tuple[Tissue, ...]] = {
    Region.WT: (Tissue.NECROTIC_CORE, Tissue.EDEMA, Tissue.ENHANCING),
    Region.TC: (Tissue.NECROTIC_CORE, Tissue.ENHANCING),
    Region.ET: (Tissue.ENHANCING,),
}


class LabelConvention(str, Enum):
    """The name of a label set (one row of :data:`LABEL_SETS`), as ``--labels`` takes it."""

    BRATS2020 = "brats2020"
    BRATS2023 = "brats2023"
    BRATS2024 = "brats2024"
    MEN = "brats-men"
    MET = "brats-met"
    PED2023 = "brats-ped2023"
    PED2024 = "brats-ped2024"
    MSD = "msd"

    @property
    def label_set(self) -> LabelSet:
        """This set's row of :data:`LABEL_SETS`."""
        return LABEL_SETS[self]

    @property
    def tissue_values(self) -> dict[Tissue, int]:
        """The value a network's core, edema and enhancing tumour are written as in this set."""
        return dict(self.label_set.model_values)

    @property
    def allowed_values(self) -> frozenset[int]:
        """Every value a label map in this set may hold, background included."""
        return frozenset({0, *(t.value for t in self.label_set.tissues)})


@dataclass(frozen=True, kw_only=True)
class LesionRule:
    """A challenge's lesion-wise parameters for one region; the defaults are BraTS 2023 glioma's.

    Attributes:
        dilation_iterations: dilations of the reference that decide which lesions merge and which
            predicted components match.
        volume_threshold_mm3: reference lesions of this volume or less are not counted.
    """

    dilation_iterations: int = 3
    volume_threshold_mm3: float = 50.0


@dataclass(frozen=True)
class TissueLabel:
    """One annotated tissue of a label set: its value, short name and what it is."""

    value: int
    name: str
    description: str


@dataclass(frozen=True)
class EvaluatedRegion:
    """A region a challenge scores: the union of some tissue values.

    Attributes:
        name: the region's name in metric keys (``dice_<name>``).
        values: the label values it is made of.
        tumour: False for regions scored apart from the tumour (the resection cavity).
        lesion: its lesion-wise parameters.
    """

    name: str
    values: tuple[int, ...]
    tumour: bool = True
    lesion: LesionRule = LesionRule()


@dataclass(frozen=True)
class LabelSet:
    """One label set: what its values mean, what its challenge evaluates, where that is written.

    Attributes:
        name: the set's name.
        title: what data it labels.
        tissues: every non-zero value with its tissue.
        model_values: the value a three-region network's core (TC without ET), edema (WT without TC)
            and enhancing tumour are written as.
        regions: the regions its challenge evaluates, WT, TC and ET first.
        case_ids: regular expressions of the case ids of its data (how a case becomes a candidate).
        source: where the values, regions and lesion-wise parameters were read.
    """

    name: LabelConvention
    title: str
    tissues: tuple[TissueLabel, ...]
    model_values: tuple[tuple[Tissue, int], ...]
    regions: tuple[EvaluatedRegion, ...]
    case_ids: tuple[str, ...]
    source: str

    def region(self, name: str) -> EvaluatedRegion:
        """The evaluated region called ``name``."""
        return next(r for r in self.regions if r.name == name)

    def tissue(self, value: int) -> TissueLabel:
        """The tissue of a non-zero value of this set."""
        return next(t for t in self.tissues if t.value == value)


def _glioma_regions(core: int, edema: int, enhancing: int, rule: LesionRule) -> tuple[EvaluatedRegion, ...]:
    """WT, TC and ET of a set with one core, one edema and one enhancing value, one lesion rule for all."""
    return (EvaluatedRegion("WT", (core, edema, enhancing), lesion=rule),
            EvaluatedRegion("TC", (core, enhancing), lesion=rule),
            EvaluatedRegion("ET", (enhancing,), lesion=rule))


def _model_values(core: int, edema: int, enhancing: int) -> tuple[tuple[Tissue, int], ...]:
    return ((Tissue.NECROTIC_CORE, core), (Tissue.EDEMA, edema), (Tissue.ENHANCING, enhancing))


_ADULT_2023 = (TissueLabel(1, "NETC", "non-enhancing tumour core"),
               TissueLabel(2, "SNFH", "surrounding non-enhancing FLAIR hyperintensity (edema)"),
               TissueLabel(3, "ET", "enhancing tissue"))
_RC = TissueLabel(4, "RC", "resection cavity")
_METRICS_2023 = ("rachitsaluja/BraTS-2023-Metrics (the BraTS 2023 challenges' official lesion-wise code) metrics.py, "
                 "get_TissueWiseSeg and get_LesionWiseResults at commit 43c905242b2eecf421d4ab2da7af8ece9777d322, "
                 "and its README's dilation/threshold table (figs/BraTS_ThreshDil.png)")
_METRICS_2024 = ("rachitsaluja/BraTS-2024-Metrics (the BraTS 2024 challenges' official lesion-wise code) {file}, "
                 "get_TissueWiseSeg and get_LesionWiseResults at commit f1131e340e155908553c226675644a6363b998b7")
#: The 2023 glioma parameters (dilation 3, lesions of 50 mm3 or less not counted).
_GLIOMA_2023 = LesionRule(dilation_iterations=3, volume_threshold_mm3=50.0)

#: Every label set bratsx knows, in the order detection prefers among sets that agree on every value present.
LABEL_SETS: dict[LabelConvention, LabelSet] = {s.name: s for s in (
    LabelSet(
        LabelConvention.BRATS2020, "BraTS 2018-2021 adult glioma",
        (TissueLabel(1, "NCR/NET", "necrotic and non-enhancing tumour core"),
         TissueLabel(2, "ED", "peritumoral edema"),
         TissueLabel(4, "ET", "GD-enhancing tumour")),
        _model_values(1, 2, 4), _glioma_regions(1, 2, 4, _GLIOMA_2023),
        case_ids=(r"brats18_", r"brats19_", r"brats20_", r"brats2021_"),
        source="values and regions: the BraTS 2018-2021 data descriptions (Bakas et al. 2018, arXiv:1811.02629; "
               "Baid et al. 2021, arXiv:2107.02314: labels 1, 2, 4; WT, TC, ET); these years had no lesion-wise "
               f"metric, so the 2023 glioma parameters apply ({_METRICS_2023})"),
    LabelSet(
        LabelConvention.BRATS2023, "BraTS 2023 adult glioma (GLI, and SSA)",
        _ADULT_2023, _model_values(1, 2, 3), _glioma_regions(1, 2, 3, _GLIOMA_2023),
        case_ids=(r"brats-gli-", r"brats-ssa-"),
        source=f"{_METRICS_2023}: GLI and SSA dilation 3, threshold 50 mm3"),
    LabelSet(
        LabelConvention.BRATS2024, "BraTS 2024-2025 post-treatment adult glioma (GLI, with resection cavity)",
        (*_ADULT_2023, _RC), _model_values(1, 2, 3),
        (EvaluatedRegion("WT", (1, 2, 3), lesion=LesionRule(dilation_iterations=3, volume_threshold_mm3=20.0)),
         EvaluatedRegion("TC", (1, 3), lesion=LesionRule(dilation_iterations=3, volume_threshold_mm3=20.0)),
         EvaluatedRegion("ET", (3,), lesion=LesionRule(dilation_iterations=3, volume_threshold_mm3=10.0)),
         EvaluatedRegion("NETC", (1,), lesion=LesionRule(dilation_iterations=5, volume_threshold_mm3=20.0)),
         EvaluatedRegion("SNFH", (2,), lesion=LesionRule(dilation_iterations=3, volume_threshold_mm3=20.0)),
         EvaluatedRegion("RC", (4,), tumour=False,
                         lesion=LesionRule(dilation_iterations=5, volume_threshold_mm3=20.0))),
        case_ids=(r"brats-gli-",),
        source=_METRICS_2024.format(file="metrics_GLI.py") + ": labels NETC 1, SNFH 2, ET 3, RC 4; WT = 1-3, "
               "TC = 1+3; dilation 3 (5 for NETC and RC: the code tests 'SFNH', so SNFH keeps 3), threshold "
               "20 mm3 (10 for ET)"),
    LabelSet(
        LabelConvention.MEN, "BraTS 2023-2024 meningioma (pre-operative)",
        _ADULT_2023, _model_values(1, 2, 3),
        _glioma_regions(1, 2, 3, LesionRule(dilation_iterations=1, volume_threshold_mm3=50.0)),
        case_ids=(r"brats-men-",),
        source=_METRICS_2024.format(file="metrics_MEN.py") + f": dilation 1, threshold 50 mm3; as {_METRICS_2023}"),
    LabelSet(
        LabelConvention.MET, "BraTS 2023-2024 brain metastases",
        (*_ADULT_2023, _RC), _model_values(1, 2, 3),
        (*_glioma_regions(1, 2, 3, LesionRule(dilation_iterations=1, volume_threshold_mm3=2.0)),
         EvaluatedRegion("RC", (4,), tumour=False, lesion=LesionRule(dilation_iterations=1, volume_threshold_mm3=2.0))),
        case_ids=(r"brats-met-",),
        source=_METRICS_2024.format(file="metrics_MET.py") + ": WT = 1-3, TC = 1+3, ET 3, RC 4; dilation 1, "
               f"threshold 2 mm3 (2023: the same, {_METRICS_2023})"),
    LabelSet(
        LabelConvention.PED2023, "BraTS 2023 pediatric glioma",
        _ADULT_2023, _model_values(1, 2, 3), _glioma_regions(1, 2, 3, _GLIOMA_2023),
        case_ids=(r"brats-ped-",),
        source=f"{_METRICS_2023}: the 2023 challenges share labels 1-3; PED dilation 3, threshold 50 mm3"),
    LabelSet(
        LabelConvention.PED2024, "BraTS 2024 pediatric tumours (relabelled)",
        (TissueLabel(1, "ET", "enhancing tumour"), TissueLabel(2, "NET", "non-enhancing tumour"),
         TissueLabel(3, "CC", "cystic component"), TissueLabel(4, "ED", "peritumoral edema")),
        _model_values(2, 4, 1),
        (*(EvaluatedRegion(name, values, lesion=LesionRule(dilation_iterations=5, volume_threshold_mm3=10.0))
           for name, values in (("WT", (1, 2, 3, 4)), ("TC", (1, 2, 3)), ("ET", (1,)), ("NET", (2,)),
                                ("CC", (3,)), ("ED", (4,)))),),
        case_ids=(r"brats-ped-",),
        source=_METRICS_2024.format(file="metrics_PED.py") + ": ET 1, NET 2 ('NETC' in the code), CC 3, ED 4; "
               "WT = 1-4, TC = 1-3; dilation 5, threshold 10 mm3"),
    LabelSet(
        LabelConvention.MSD, "Medical Segmentation Decathlon Task01_BrainTumour",
        (TissueLabel(1, "edema", "edema"), TissueLabel(2, "non-enhancing tumor", "non-enhancing tumour"),
         TissueLabel(3, "enhancing tumour", "enhancing tumour")),
        _model_values(2, 1, 3), _glioma_regions(2, 1, 3, _GLIOMA_2023),
        case_ids=(r"brats_\d+$",),
        source="Task01_BrainTumour/dataset.json 'labels' (Simpson et al. 2019, arXiv:1902.09063; the data are "
               "BraTS 2016-2017's); MSD has no lesion-wise metric, so the 2023 glioma parameters apply"),
)}

#: Sets a case whose id and layout say nothing could belong to: adult glioma, all years. Pediatric,
#: meningioma, metastases and MSD maps are recognised by their ids, a dataset.json or ``--labels``.
#: BraTS 2023 comes first: where the candidates read a map alike (0/1/2), it is the set taken, and
#: the one whose values (ET 3) read back unambiguously when bratsx writes an output in it.
DEFAULT_CANDIDATES: tuple[LabelConvention, ...] = (
    LabelConvention.BRATS2023, LabelConvention.BRATS2024, LabelConvention.BRATS2020)


class LabelSetError(BratsxError):
    """A label map's values fit no candidate set, or candidates that read them differently."""


def candidate_sets(case_id: str | None) -> tuple[LabelConvention, ...]:
    """The label sets a case could belong to, by its id (``BraTS-PED-...``); :data:`DEFAULT_CANDIDATES` else."""
    if case_id:
        named = tuple(name for name, row in LABEL_SETS.items()
                      if any(re.match(pattern, case_id, re.IGNORECASE) for pattern in row.case_ids))
        if named:
            return named
    return DEFAULT_CANDIDATES


def value_meaning(convention: LabelConvention, value: int) -> str:
    """What a non-zero value is, in words shared across sets: the network tissue it is written for
    (``NECROTIC_CORE``, ``EDEMA``, ``ENHANCING``), else the tissue's own name (``RC``, ``CC``)."""
    row = convention.label_set
    tissue = next((t for t, v in row.model_values if v == value), None)
    return tissue.name if tissue is not None else row.tissue(value).name


_LUT_SIZE = 256


def _lookup_table(mapping: dict[int, int | bool], dtype: type) -> np.ndarray:
    table = np.zeros(_LUT_SIZE, dtype=dtype)
    for source, target in mapping.items():
        table[source] = target
    return table


def _as_lut_index(labels: np.ndarray) -> np.ndarray:
    """Labels as an unsigned array that can index a 256-entry lookup table (no copy for uint8)."""
    if labels.dtype == np.uint8:
        return labels
    return labels.astype(np.uint8)


def present_values(labels: np.ndarray) -> list[float]:
    """The distinct values in a label map, sorted; fast for small non-negative integers."""
    if labels.size == 0:
        return []
    if np.issubdtype(labels.dtype, np.integer):
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < 65536:
            counts = np.bincount(labels.ravel(), minlength=high + 1)
            return [int(v) for v in np.flatnonzero(counts)]
    return [float(v) if not float(v).is_integer() else int(v) for v in np.unique(labels)]


def unexpected_values(labels: np.ndarray, convention: LabelConvention) -> list[float]:
    """Values in ``labels`` that ``convention`` does not define (empty when the map is valid)."""
    return [v for v in present_values(labels) if v not in convention.allowed_values]


def detect_convention(
    labels: np.ndarray, candidates: tuple[LabelConvention, ...] = DEFAULT_CANDIDATES
) -> LabelConvention:
    """The label set of a map, read from its values among the sets it could belong to.

    The candidates whose values hold every value present are kept. When they all read each present
    value as the same tissue (``{1, 2}`` is core and edema in every adult glioma set), the first
    candidate is returned: the map means the same under each. When two read a value
    differently (4 is enhancing tumour in BraTS 2018-2021 but resection cavity in 2024), nothing is
    guessed.

    Raises:
        LabelSetError: no candidate holds the values, or the fitting candidates disagree; one line
            naming them and ``--labels``.
    """
    values = [v for v in present_values(labels) if v != 0]
    fitting = [c for c in candidates if set(values) <= c.allowed_values]
    if not fitting:
        allowed = "; ".join(f"{c.value} {sorted(c.allowed_values)}" for c in candidates)
        raise LabelSetError(f"label values {sorted({0, *values})} fit none of the label sets this case could "
                            f"belong to ({allowed}); choose the set with --labels")
    meanings = {c: tuple(value_meaning(c, v) for v in values) for c in fitting}
    if len(set(meanings.values())) > 1:
        fitting.sort(key=list(LABEL_SETS).index)  # named in table order
        readings = "; ".join(f"{c.value} reads " + ", ".join(
            f"{v} as {c.label_set.tissue(v).name}" for v in values) for c in fitting)
        raise LabelSetError(f"label values {sorted({0, *values})} are ambiguous ({readings}); choose the set "
                            f"with --labels {'|'.join(c.value for c in fitting)}")
    return fitting[0]


def with_adult_glioma(candidates: tuple[LabelConvention, ...]) -> tuple[LabelConvention, ...]:
    """``candidates`` and then :data:`DEFAULT_CANDIDATES`: the sets a prediction made for such a case may be
    written in (another tool may write BraTS 2023 values for a BraTS 2018 case)."""
    return tuple(dict.fromkeys((*candidates, *DEFAULT_CANDIDATES)))


def _value_table(values: tuple[int, ...]) -> np.ndarray:
    return _lookup_table(dict.fromkeys(values, True), bool)


def regions_from_labels(labels: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Nested region masks WT, TC, ET from a label map, as its set defines them.

    Args:
        labels: integer label map of any shape, values in ``convention`` (see
            :func:`unexpected_values` to check first).
        convention: the label set of ``labels``.

    Returns:
        Boolean array of shape ``(3, *labels.shape)``, channels in :data:`REGION_ORDER` (WT, TC, ET).
    """
    row = convention.label_set
    return _masks(labels, [row.region(region.value).values for region in REGION_ORDER])


def evaluated_region_masks(labels: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Masks of every region the set's challenge evaluates, in :attr:`LabelSet.regions` order (WT, TC, ET first)."""
    return _masks(labels, [region.values for region in convention.label_set.regions])


def _masks(labels: np.ndarray, value_sets: list[tuple[int, ...]]) -> np.ndarray:
    index = _as_lut_index(labels)
    masks = np.empty((len(value_sets), *labels.shape), dtype=bool)
    for channel, values in enumerate(value_sets):
        np.take(_value_table(values), index, out=masks[channel])
    return masks


def labels_from_regions(regions: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """A label map from region masks, the inner region winning where they disagree.

    Predicted regions need not be perfectly nested; as in BraTS practice, ET takes precedence over
    TC and TC over WT: a voxel is ET if ET is set, else core if TC is set, else edema if WT is set.

    Args:
        regions: boolean (or 0/1) array of shape ``(3, ...)`` in :data:`REGION_ORDER`.
        convention: the convention of the returned labels.

    Returns:
        ``uint8`` label map of shape ``regions.shape[1:]``.
    """
    if regions.shape[0] != len(REGION_ORDER):
        raise ValueError(f"expected {len(REGION_ORDER)} region channels (WT, TC, ET), got {regions.shape[0]}")
    values = convention.tissue_values
    wt, tc, et = (np.asarray(r, dtype=bool) for r in regions)
    labels = np.zeros(regions.shape[1:], dtype=np.uint8)
    labels[wt] = values[Tissue.EDEMA]
    labels[tc] = values[Tissue.NECROTIC_CORE]
    labels[et] = values[Tissue.ENHANCING]
    return labels


def convert_labels(labels: np.ndarray, source: LabelConvention, target: LabelConvention) -> np.ndarray:
    """Re-encode a label map from one set to another through its WT/TC/ET regions (``uint8`` result).

    Tissues the target cannot hold become the tissue of their region: a pediatric cystic component
    (in TC) becomes core; a resection cavity (in no tumour region) becomes background.
    """
    return labels_from_regions(regions_from_labels(labels, source), target)


#: Class indices of ``labels``-mode networks (and of the training cache): class i is label value i
#: of the BraTS 2023 convention (0 background, 1 necrotic core, 2 edema, 3 enhancing).
CLASS_CONVENTION = LabelConvention.BRATS2023


def regions_from_probabilities(probabilities: np.ndarray, output_mode: OutputMode) -> np.ndarray:
    """Boolean WT/TC/ET masks from network probabilities ``(C, ...)``.

    ``regions`` outputs are thresholded at 0.5 per channel; ``labels`` outputs take the arg-max
    class (in :data:`CLASS_CONVENTION`) and convert it to regions.
    """
    if OutputMode(output_mode) is OutputMode.REGIONS:
        return probabilities > 0.5
    return regions_from_labels(probabilities.argmax(axis=0).astype(np.uint8), CLASS_CONVENTION)
