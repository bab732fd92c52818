"""Applications built on the event-driven Consumer API."""
