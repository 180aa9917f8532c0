"""Training: the network, losses, patch sampling and the training loop (needs the ``train`` extra)."""
