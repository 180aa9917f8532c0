"""The network and its checkpoints, below both the runtime and the trainer (needs torch: the train extra).

- :mod:`~bratsx.network.unet`: the nnU-Net-style 3D U-Net and its tile prediction.
- :mod:`~bratsx.network.checkpoint`: checkpoints, written atomically, read back with their contract.

``bratsx.runtime``'s torch backend and ``bratsx.trainer`` (and ``bratsx.export``) import it; it imports
neither, so the package import graph has no cycle and no arrow from the runtime up into the trainer.
This ``__init__`` imports nothing, so naming the package never loads torch.
"""
