"""Faust agents: thin I/O shells around the pure logic in `streams/`."""
