"""The simulated city used by `make demo`: hospitals publishing studies against a live pipeline."""
