"""Web front-ends served by the worker's Faust web server (next to the JSON APIs)."""
