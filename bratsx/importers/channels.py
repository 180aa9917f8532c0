"""Which of a case's images feeds each input channel of an imported model.

Frameworks name their channels freely (nnU-Net's ``dataset.json`` ``channel_names``: ``"T1ce"``, ``"t2f"``,
``"FLAIR"``, ``"ADC"``...). :func:`modalities_for_channels` maps each name to a BraTS modality by its common
spellings, or takes the user's ``--channels 0=t1,1=t1ce,...``; a channel that is no BraTS modality (an ADC or DWI
map) keeps its own name, lower-case letters and digits (``adc``), and each case names its file so
(``<id>_adc.nii.gz``, ``<id>-adc.nii.gz`` or ``adc.nii.gz``: :func:`bratsx.cases.discover`). A name that cannot
name a file, or two channels mapped to one image, is refused in one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import BratsxError
from ..labels import Modality, check_channel_name

__all__ = ["REGION_NAMES", "parse_channel_option", "modalities_for_channels", "regions_for_channels"]

#: Spellings of each modality, compared lower-case with everything but letters and digits removed.
_ALIASES: dict[Modality, tuple[str, ...]] = {
    Modality.FLAIR: ("flair", "t2f", "t2flair", "fla"),
    Modality.T1: ("t1", "t1n", "t1w", "t1native", "t1pre"),
    Modality.T1CE: ("t1ce", "t1c", "t1gd", "t1post", "t1contrast", "t1wce", "t1cgd"),
    Modality.T2: ("t2", "t2w"),
}
_BY_ALIAS = {alias: modality for modality, aliases in _ALIASES.items() for alias in aliases}
#: Names of the BraTS regions (output channels, nnU-Net region labels), compared as the modality spellings.
REGION_NAMES = {"WT": ("wholetumor", "wholetumour", "wt"), "TC": ("tumorcore", "tumourcore", "tc"),
                "ET": ("enhancingtumor", "enhancingtumour", "enhancing", "et")}


def _simplified(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _channel(name: str) -> str:
    """The channel a framework's or the user's name stands for: a BraTS modality by any of its spellings, else
    the name itself, simplified (``"ADC"``: ``adc``).

    Raises:
        BratsxError: a name that simplifies to nothing a file can be named by (see
            :func:`~bratsx.labels.check_channel_name`).
    """
    modality = _BY_ALIAS.get(_simplified(name))
    return modality.value if modality is not None else check_channel_name(_simplified(name))


def parse_channel_option(text: str) -> dict[int, str]:
    """``"0=t1,1=T1Gd,2=adc"`` as ``{0: "t1", 1: "t1ce", 2: "adc"}``: each channel's image, a BraTS modality by any
    of its spellings, or another name its files carry.

    Raises:
        BratsxError: an entry that is not ``INDEX=NAME``, or a name that cannot name files.
    """
    mapping: dict[int, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        index, _, name = entry.partition("=")
        if not index.strip().isdigit() or not _simplified(name):
            choices = ", ".join(m.value for m in Modality)
            raise BratsxError(f"--channels: {entry!r} is not INDEX=NAME with a name such as {choices} or adc")
        try:
            mapping[int(index)] = _channel(name)
        except BratsxError as error:
            raise BratsxError(f"--channels: {entry!r}: {error}") from error
    return mapping


def modalities_for_channels(channel_names: Mapping[str, str], override: Mapping[int, str] | None = None,
                            where: str = "dataset.json") -> tuple[str, ...]:
    """The name of each channel's image, in channel order: a BraTS modality's, or the channel's own.

    Args:
        channel_names: channel index (as a string) -> the framework's name for it.
        override: the user's mapping for some or all channels (from :func:`parse_channel_option`); it wins over
            the names.
        where: the file the names come from, for the error.

    Raises:
        BratsxError: a name that cannot name files (and not overridden), an override for a channel the model
            does not have, or two channels mapped to one image.
    """
    override = dict(override or {})
    count = len(channel_names)
    extra = sorted(set(override) - set(range(count)))
    if extra:
        raise BratsxError(f"--channels names channel {extra[0]}, but the model has channels 0-{count - 1}")
    modalities = []
    for index in range(count):
        name = channel_names[str(index)]
        try:
            modalities.append(override[index] if index in override else _channel(name))
        except BratsxError as error:
            raise BratsxError(f"{where}: channel {index} ({name!r}): {error}; name its files with "
                              f"--channels {index}=NAME") from error
    if len(set(modalities)) != len(modalities):
        raise BratsxError(f"{where}: two channels map to one image ({', '.join(modalities)}); give each its own "
                          "with --channels")
    return tuple(modalities)


def regions_for_channels(channel_names: Mapping[str, str], where: str) -> tuple[str, ...]:
    """The BraTS region (``WT``, ``TC``, ``ET``) of each output channel, in channel order, by its name.

    Raises:
        BratsxError: not three channels, or names that are not the three regions one each.
    """
    regions = []
    for index in range(len(channel_names)):
        name = channel_names.get(str(index), "")
        found = [region for region, aliases in REGION_NAMES.items() if _simplified(name) in aliases]
        regions.append(found[0] if found else None)
    if len(regions) != 3 or sorted(map(str, regions)) != ["ET", "TC", "WT"]:
        names = ", ".join(repr(channel_names.get(str(i))) for i in range(len(channel_names)))
        raise BratsxError(f"{where}: output channels ({names}) are not the three BraTS regions (whole tumour, tumour "
                          "core, enhancing tumour) one each; bratsx imports BraTS region models")
    return tuple(regions)
