"""Processes and adapters around the bus: Triton, the hospital publisher, the synthetic city."""
