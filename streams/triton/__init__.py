"""The worker's Triton client and the circuit breaker that waits out an unavailable server."""
