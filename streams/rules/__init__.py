"""Pure decision rules on announcements: intake validation, origin, routing, priority, the dedup
horizon."""
