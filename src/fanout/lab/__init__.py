"""The lab: load generation and the servers it is measured against."""
