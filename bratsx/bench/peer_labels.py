"""The BraTS label set the bench's peers write for a bratsx model, so that bratsx's rows can be compared with them.

nnU-Net's predictor (wrapping a bratsx network) and MONAI's sliding window write one fixed set whatever the case:
2018-2021 values for region models (nnU-Net's BraTS datasets paint regions as 1 edema, 2 core, 4 enhancing in that
set), and 2023 values for label models (nnU-Net needs consecutive labels, which only 2023's 0-3 are). bratsx's rows
write each case in its own convention (a BraTS 2023 case in 2023 values), so a comparison that read the peer's file
by the case's naming would read 2018-2021's enhancing 4 as another set's label: with peers, bratsx's rows write this
set too, and the agreement is read in it.
"""

from __future__ import annotations

from ..contract import ModelContract
from ..labels import LabelConvention, OutputMode

__all__ = ["peer_convention"]


def peer_convention(contract: ModelContract) -> LabelConvention:
    """The label set the peers write for ``contract``'s model (see the module docstring)."""
    return LabelConvention.BRATS2020 if contract.output_mode is OutputMode.REGIONS else LabelConvention.BRATS2023
