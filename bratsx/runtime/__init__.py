"""Inference runtime: backends and sliding-window prediction. Never imports torch at import time."""
