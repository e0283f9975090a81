"""radstream streaming layer: the Faust app, its agents, and the pure logic they call."""
