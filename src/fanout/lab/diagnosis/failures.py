"""Rules read from the server failing outright: exceptions in its log, an early exit."""

from __future__ import annotations

from typing import Any

from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import code, count, num, num0
from fanout.lab.diagnosis._words import plural
from fanout.lab.document import Cause, Severity, Verdict, objects

#: Exception messages are cut to this length in summaries.
MESSAGE_CHARS = 120


def _exceptions(run: Run) -> list[dict[str, Any]]:
    """The server's exceptions grouped by type, most frequent first; each keeps the
    message of its most frequent record and how many distinct messages there were."""
    groups: dict[str, dict[str, Any]] = {}
    for exc in objects(run.server or {}, "exceptions"):
        kind = str(exc.get("type") or "Exception")
        message, n = str(exc.get("message") or ""), max(1, count(exc.get("count")))
        group = groups.setdefault(kind, {"type": kind, "message": message, "count": 0, "top": 0})
        group["count"] += n
        group.setdefault("messages", set()).add(message)
        if n > group["top"]:
            group["message"], group["top"] = message, n
    found = [
        {
            "type": g["type"],
            "message": g["message"],
            "count": g["count"],
            "messages": len(g["messages"]),
        }
        for g in groups.values()
    ]
    return sorted(found, key=lambda exc: -int(exc["count"]))


def _dropped_connections(run: Run) -> int:
    """Stable receivers and senders the server closed with an error or dropped."""
    conns = [*run.receivers_of("stable"), *run.senders]
    return sum(1 for c in conns if code(c.get("close_code")) in (1006, 1011))


def handler_exception(run: Run) -> Verdict | None:
    exceptions = _exceptions(run)
    if not exceptions:
        return None
    top, total = exceptions[0], sum(int(exc["count"]) for exc in exceptions)
    message = top["message"]
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    summary = f"the server raised {top['type']} {plural(top['count'], 'time')}"
    if message:
        others = int(top["messages"]) - 1
        more = f" and {plural(others, 'other message')}" if others > 0 else ""
        summary += f" ({message}{more})"
    if len(exceptions) > 1:
        summary += f", and {plural(len(exceptions) - 1, 'other exception type')}"
    dropped = _dropped_connections(run)
    harmful = run.lost > 0 or dropped > 0 or run.total("duplicated") > 0
    return Verdict(
        Cause.HANDLER_EXCEPTION,
        Severity.BREAK if harmful else Severity.WARN,
        summary,
        {
            "type": top["type"],
            "message": top["message"],
            "count": top["count"],
            "total": total,
            "exceptions": exceptions,
            "dropped_connections": dropped,
            "lost": run.lost,
        },
    )


def server_exited(run: Run) -> Verdict | None:
    """The server process ended while the load was still being sent."""
    exit_code = run.server.get("exit_code") if run.server else None
    if exit_code is None or not run.samples:
        return None
    last = num0(run.samples[-1].get("t"))
    if last >= run.send_end - 0.5:
        return None  # observed to the end: the exit code is the lab stopping it
    return Verdict(
        Cause.SERVER_EXITED,
        Severity.BREAK,
        f"the server exited with code {exit_code} at about t={last:.1f} s,"
        f" before sending ended at t={run.send_end:.1f} s",
        {
            "exit_code": num(exit_code),
            "last_sample_s": last,
            "send_end_s": run.send_end,
            "lost": run.lost,
        },
    )
