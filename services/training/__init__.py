"""Offline training of the reference models served by Triton (numpy only, no torch)."""
