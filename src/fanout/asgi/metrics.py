"""``/metrics``: the hub's counters and gauges in Prometheus' text format."""

from __future__ import annotations

from fanout.core.hub import Hub


def render_metrics(hub: Hub) -> str:
    """Prometheus text exposition of the hub's counters and gauges."""
    lines = [
        "# TYPE fanout_connections gauge",
        f"fanout_connections {len(hub.connections)}",
        "# TYPE fanout_rooms gauge",
        f"fanout_rooms {hub.room_count}",
        "# TYPE fanout_outbox_bytes gauge",
        f"fanout_outbox_bytes {sum(c.queued_bytes for c in hub.connections)}",
        "# TYPE fanout_revocations gauge",
        f"fanout_revocations {len(hub.users.revocations)}",
        "# TYPE fanout_revocations_dropped counter",
        f"fanout_revocations_dropped {hub.users.dropped_revocations}",
    ]
    lines.append("# TYPE fanout_broker_errors counter")
    for kind in ("unavailable", "timeout", "refused"):
        lines.append(f'fanout_broker_errors{{kind="{kind}"}} {hub.broker.errors.get(kind, 0)}')
    for name in sorted(hub.counters):
        lines.append(f"# TYPE fanout_{name} counter")
        lines.append(f"fanout_{name} {hub.counters[name]}")
    return "\n".join(lines) + "\n"
