"""Training: losses, patch sampling and the training loop (needs the ``train`` extra; the network is
:mod:`bratsx.network`)."""
