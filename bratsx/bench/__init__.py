"""Benchmarking: FLOPs of a model file, the machine's measured peak, and (later) ``bratsx bench``."""
