"""Which series is FLAIR, T1, T1ce and T2: scored evidence from DICOM headers and names, never a guess.

Each series is scored on two questions, each with written evidence:

* **weighting** (FLAIR, T2 or T1): name tokens (``flair``, ``fla``, ``t2f``, ``tirm``; ``t2``, ``t2w``;
  ``t1``, ``t1n``, ``mprage``, ...), the inversion time (>= 1500 ms: fluid suppression), the echo and
  repetition times (long TE and TR: T2; short TE with short TR, or an MPRAGE inversion: T1); an echo
  time alone (a NIfTI header's ``TE=``) weighs half as much, and a long one cannot tell T2 from FLAIR;
* **contrast** for T1-weighted series: a ContrastBolusAgent tag or a name token (``post``, ``gad``,
  ``gd``, ``t1c``, ``t1ce``, ``t1gd``, ``+c``, ``contrast``) says post-contrast; ``pre``, ``t1n``,
  ``native`` say pre-contrast; neither means pre-contrast at lower confidence.

Series that cannot be one of the four are excluded with their reason (not MR, a localizer, fewer than
three slices, diffusion/perfusion/angiography and other non-structural series). ``--map`` overrides
the evidence. :func:`assign_sequences` then refuses a case where a sequence has no candidate or two,
naming what it found: a wrong channel would give a confident, wrong segmentation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import BratsxError, CaseError
from ..labels import MODALITY_ORDER, Modality
from .ingest import Series

__all__ = ["Identification", "IdentificationError", "assign_sequences", "identify_series", "parse_sequence_map"]

#: Below this a series is not used for any sequence (it stays in the table as "unsure").
MIN_CONFIDENCE = 0.5
#: How sure a T1 with no contrast evidence either way is to be pre-contrast.
PRE_CONTRAST_BY_ABSENCE = 0.6

_WEIGHTING_TOKENS = {
    Modality.FLAIR: ("flair", "fla", "t2f", "tirm", "darkfluid", "dark-fluid", "t2flair"),
    Modality.T2: ("t2", "t2w", "t2tse", "t2_tse", "t2frfse"),
    Modality.T1: ("t1", "t1w", "t1n", "t1c", "t1ce", "t1gd", "mprage", "spgr", "bravo", "tfl", "t1post", "t1pre"),
}
_POST_TOKENS = ("post", "gad", "gd", "t1c", "t1ce", "t1gd", "+c", "c+", "contrast", "kontrast", "ce", "t1post")
_PRE_TOKENS = ("pre", "t1n", "native", "nativ", "t1pre")
_NOT_STRUCTURAL = ("dwi", "adc", "trace", "diff", "diffusion", "dti", "perf", "perfusion", "dsc", "dce", "swi",
                   "tof", "mra", "bold", "fmri", "asl", "mip", "fa", "b0", "b1000", "spectro", "svs")
_LOCALIZER_TOKENS = ("localizer", "localiser", "scout", "survey", "loc", "3plane", "aahead", "aascout")
#: Fewer slices than this is a 2D series: not a volume to register.
MIN_SLICES = 3


class IdentificationError(CaseError):
    """A sequence is missing or has two candidates; :attr:`verdicts` is the table that shows why."""

    verdicts: tuple = ()


@dataclass(frozen=True)
class Identification:
    """The verdict on one series.

    Attributes:
        series: the series.
        sequence: FLAIR, T1, T1ce or T2, or ``None`` (excluded or unsure).
        confidence: 0 to 1.
        evidence: why, in words, in the order weighed.
        excluded: why the series cannot be any sequence (empty when it can).
    """

    series: Series
    sequence: Modality | None
    confidence: float
    evidence: tuple[str, ...]
    excluded: str = ""


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("+c", " +c ").replace("c+", " c+ ")
    return [t for t in re.split(r"[^a-z0-9+]+", text) if t]


def _name_text(series: Series) -> str:
    name = series.description
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _excluded(series: Series, tokens: list[str]) -> str:
    if series.modality and series.modality != "MR":
        return f"not MR (modality {series.modality})"
    if "LOCALIZER" in series.image_type or any(t in _LOCALIZER_TOKENS for t in tokens):
        return "a localizer/scout"
    if series.slices < MIN_SLICES:
        return f"a 2D series ({series.slices} slice{'s' if series.slices != 1 else ''})"
    found = [t for t in tokens if t in _NOT_STRUCTURAL]
    if found or any(v in series.image_type for v in ("ADC", "TRACEW", "DIFFUSION", "PERFUSION")):
        return f"not a structural sequence ({', '.join(found) or 'image type ' + ' '.join(series.image_type)})"
    return ""


def _weighting_evidence(series: Series, tokens: list[str]) -> tuple[dict[Modality, float], list[str]]:
    scores = {Modality.FLAIR: 0.0, Modality.T2: 0.0, Modality.T1: 0.0}
    evidence: list[str] = []
    hits = {weighting: sorted({t for t in tokens if t in names}) for weighting, names in _WEIGHTING_TOKENS.items()}
    if hits[Modality.FLAIR] and not hits[Modality.T1]:
        hits[Modality.T2] = []  # "T2 FLAIR" is a FLAIR
    for weighting, found in hits.items():
        if found:
            scores[weighting] += 2.0
            evidence.append(f"name '{'/'.join(found)}'")
    te, tr, ti = series.echo_time, series.repetition_time, series.inversion_time
    if ti is not None and ti >= 1500:
        scores[Modality.FLAIR] += 3.0
        evidence.append(f"TI {ti:.0f} ms (fluid suppressed)")
    elif ti is not None and 300 <= ti < 1500 and te is not None and te < 15:
        scores[Modality.T1] += 2.0
        evidence.append(f"TI {ti:.0f} ms, TE {te:.0f} ms (MPRAGE-like)")
    elif te is not None and tr is not None:
        if te >= 70 and tr >= 2000:
            scores[Modality.T2] += 2.0
            evidence.append(f"TE {te:.0f} ms, TR {tr:.0f} ms (T2-weighted)")
        elif te <= 30 and tr <= 1200:
            scores[Modality.T1] += 2.0
            evidence.append(f"TE {te:.0f} ms, TR {tr:.0f} ms (T1-weighted)")
    elif te is not None:  # an echo time alone (a NIfTI header's description): weaker evidence
        if te <= 30:
            scores[Modality.T1] += 1.0
            evidence.append(f"TE {te:.0f} ms (short: T1-like)")
        elif te >= 70:
            scores[Modality.T2] += 0.5
            scores[Modality.FLAIR] += 0.5
            evidence.append(f"TE {te:.0f} ms (long: T2 or FLAIR)")
    return scores, evidence


def _contrast(series: Series, tokens: list[str]) -> tuple[bool, float, str]:
    """Whether a T1-weighted series is post-contrast, how sure, and why."""
    if series.contrast_agent:
        return True, 1.0, f"contrast agent '{series.contrast_agent}'"
    post = sorted({t for t in tokens if t in _POST_TOKENS})
    pre = sorted({t for t in tokens if t in _PRE_TOKENS})
    if post and not pre:
        return True, 1.0, f"name '{'/'.join(post)}' (post-contrast)"
    if pre and not post:
        return False, 1.0, f"name '{'/'.join(pre)}' (pre-contrast)"
    if pre and post:
        return False, 0.0, f"name says both pre ('{'/'.join(pre)}') and post ('{'/'.join(post)}')"
    return False, PRE_CONTRAST_BY_ABSENCE, "no contrast agent recorded"


def identify_series(series: Series) -> Identification:
    """Score one series; the verdict carries its confidence and evidence."""
    tokens = _tokens(f"{_name_text(series)} {series.scanning_sequence if series.is_dicom else ''}")
    reason = _excluded(series, tokens)
    if reason:
        return Identification(series, None, 0.0, (), reason)
    scores, evidence = _weighting_evidence(series, tokens)
    total = sum(scores.values())
    if total == 0:
        return Identification(series, None, 0.0, ("no name or header evidence",))
    weighting = max(scores, key=scores.get)
    confidence = scores[weighting] / total
    if list(scores.values()).count(scores[weighting]) > 1:
        return Identification(series, None, 0.0, tuple(evidence) + ("evidence for two weightings",))
    sequence = weighting
    if weighting is Modality.T1:
        post, sure, why = _contrast(series, tokens)
        evidence.append(why)
        confidence *= sure
        sequence = Modality.T1CE if post else Modality.T1
    return Identification(series, sequence, round(confidence, 2), tuple(evidence))


def parse_sequence_map(entries: list[str]) -> dict[str, Modality]:
    """``--map`` values (``KEY=SEQUENCE``, comma-separated or repeated) as a mapping.

    KEY is a series number, SeriesInstanceUID, series description or file name.

    Raises:
        BratsxError: an entry without ``=`` or naming an unknown sequence.
    """
    mapping: dict[str, Modality] = {}
    for entry in (part.strip() for raw in entries for part in raw.split(",")):
        if not entry:
            continue
        key, sep, value = entry.rpartition("=")
        names = {m.value: m for m in Modality} | {"t1c": Modality.T1CE, "t1gd": Modality.T1CE, "t2f": Modality.FLAIR}
        if not sep or not key or value.strip().lower() not in names:
            raise BratsxError(f"--map {entry!r}: expected SERIES_OR_FILE=SEQUENCE with SEQUENCE one of "
                              f"{', '.join(m.value for m in MODALITY_ORDER)}")
        mapping[key.strip()] = names[value.strip().lower()]
    return mapping


def _mapped(series: Series, mapping: Mapping[str, Modality]) -> Modality | None:
    keys = {series.key, series.label, series.description, _name_text(series)}
    if series.number is not None:
        keys.add(str(series.number))
    return next((mapping[k] for k in keys if k in mapping), None)


def assign_sequences(
    case_id: str, series: list[Series], mapping: Mapping[str, Modality] | None = None
) -> tuple[dict[Modality, Series], list[Identification]]:
    """Pick one series per sequence.

    Args:
        case_id: for the error message.
        series: every series of the case.
        mapping: ``--map`` overrides (see :func:`parse_sequence_map`); a mapped series wins its sequence.

    Returns:
        The series per sequence, and the verdict on every series (the table to show).

    Raises:
        CaseError: a sequence has no candidate, or two; the message names both and suggests ``--map``.
    """
    mapping = mapping or {}
    verdicts = []
    for one in series:
        forced = _mapped(one, mapping)
        verdict = identify_series(one)
        if forced is not None:
            verdict = Identification(one, forced, 1.0, ("--map",) + verdict.evidence)
        verdicts.append(verdict)
    chosen: dict[Modality, Series] = {}
    problems = []
    for sequence in MODALITY_ORDER:
        forced = [v for v in verdicts if v.sequence is sequence and v.evidence[:1] == ("--map",)]
        candidates = forced or [v for v in verdicts if v.sequence is sequence and v.confidence >= MIN_CONFIDENCE]
        if len(candidates) == 1:
            chosen[sequence] = candidates[0].series
        elif not candidates:
            problems.append(f"no {sequence.value.upper()} found")
        else:
            names = " and ".join(f"'{v.series.label}'" for v in candidates)
            problems.append(f"two candidates for {sequence.value.upper()}: {names}")
    if problems:
        found = ", ".join(f"{v.sequence.value if v.sequence else '?'}='{v.series.label}'" for v in verdicts
                          if not v.excluded) or "no usable series"
        error = IdentificationError(case_id, f"{'; '.join(problems)} (found: {found}); name the series with "
                                             f"--map SERIES_OR_FILE=SEQUENCE")
        error.verdicts = tuple(verdicts)
        raise error
    return chosen, verdicts
