"""``python -m bratsx``: the same as the ``bratsx`` command (and what ``torchrun -m bratsx`` runs)."""

from .cli import main

main()
