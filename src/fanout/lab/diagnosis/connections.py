"""Rules read from how connections opened and closed: refusals, limits, close codes."""

from __future__ import annotations

import re
from collections import Counter

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import code, count, num
from fanout.lab.diagnosis._words import close_counts, either_and, plural
from fanout.lab.document import Cause, Severity, Verdict, mapping

TOO_BIG, SERVER_FULL, SLOW_CONSUMER, RATE_LIMITED = 1009, 1013, 4008, 4029
#: HTTP statuses at the handshake that mean "full, come back later".
LIMIT_STATUSES = (503, 429)
#: Close codes other rules account for (1000 is the lab's own close echoed back).
EXPLAINED_CLOSES = {1000, TOO_BIG, SERVER_FULL, RATE_LIMITED}


def _refusal(error: str) -> int | None:
    """The HTTP status (``http 503``) or close code (``closed with 1013``) of a refusal."""
    match = re.fullmatch(r"(?:http\s*(\d{3})|closed with\s*(\d{4}))\b.*", error)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def _who(closed: int, total: int, word: str) -> str:
    if closed == total == 1:
        return f"the {word}"
    if closed == total:
        return f"all {fmt.count(total)} {word}s"
    if total:
        return f"{fmt.count(closed)} of {fmt.count(total)} {word}s"
    return plural(closed, word)


def size_limit(run: Run) -> Verdict | None:
    senders, receivers = run.closes(run.senders, TOO_BIG), run.closes(run.receivers, TOO_BIG)
    total = max(senders + receivers, run.close_codes[TOO_BIG])
    if total == 0:
        return None
    size = num(run.config.get("size"))
    if size is None:
        size = max((n for s in run.senders if (n := num(s.get("size"))) is not None), default=None)
    if senders:
        who = _who(senders, len(run.senders), "sender")
    elif receivers:
        who = _who(receivers, len(run.receivers), "receiver")
    else:
        who = plural(total, "connection")
    of = f"messages of {fmt.short_bytes(size)}" if size is not None else "the messages"
    return Verdict(
        Cause.SIZE_LIMIT,
        Severity.BREAK,
        f"{of} closed {who} with 1009 (message too big)",
        {
            "close_code": TOO_BIG,
            "size_bytes": size,
            "closed_senders": senders,
            "closed_receivers": receivers,
            "count": total,
        },
    )


def _connect_counts(run: Run) -> tuple[int, dict[int, int], dict[str, int]]:
    """(refused, "full" refusals by HTTP status or 1013, every other error)."""
    refused = 0
    limited: dict[int, int] = {}
    other: dict[str, int] = {}
    for error, n in run.connect_errors.items():
        status = _refusal(error)
        if "refused" in error:
            refused += n
        elif status in (*LIMIT_STATUSES, SERVER_FULL):
            limited[status] = limited.get(status, 0) + n
        else:
            other[error] = n
    return refused, limited, other


def _out_of(run: Run) -> str:
    return f" of {fmt.count(run.n_connections)}" if run.n_connections else ""


def nothing_connected(run: Run) -> list[str]:
    """Why the run measured nothing when not one connection opened (the server did not
    answer, or not with a WebSocket); empty when one did, or when the server turned the
    connections away as full (that is its verdict, ``connect_limited``)."""
    conns = [*run.receivers, *run.senders]
    if conns:
        opened = any(not c.get("connect_error") for c in conns)
    else:
        opened = run.total("connect_failures") < run.n_connections
    if opened or not run.connect_errors:
        return []
    _, limited, _ = _connect_counts(run)
    if limited or run.close_codes[SERVER_FULL]:
        return []
    errors = ", ".join(f"{error} × {n}" for error, n in sorted(run.connect_errors.items()))
    why = "the run measured nothing"
    if set(run.connect_errors) == {"refused"}:
        url = str(run.config.get("url") or "the URL")
        why = f"nothing was listening at {url}, so the run measured nothing"
    return [f"no connection could be opened ({errors}): {why}"]


def connect_refused(run: Run) -> Verdict | None:
    refused, _, _ = _connect_counts(run)
    if not refused:
        return None
    return Verdict(
        Cause.CONNECT_REFUSED,
        Severity.BREAK,
        f"{fmt.count(refused)}{_out_of(run)} connections were refused: nothing was listening"
        " on the port, or its listen backlog was full",
        {
            "refused": refused,
            "connections": run.n_connections,
            "connect_failures": run.total("connect_failures"),
            "stable_receivers_not_connected": run.stable_unconnected,
        },
    )


def connect_limited(run: Run) -> Verdict | None:
    _, limited, _ = _connect_counts(run)
    # A 1013 during the handshake may be in both the connect errors and the close codes.
    full = max(run.close_codes[SERVER_FULL], limited.pop(SERVER_FULL, 0))
    turned_away = sum(limited.values()) + full
    if not turned_away:
        return None
    parts = [f"HTTP {status} × {n}" for status, n in sorted(limited.items())]
    if full:
        parts.append(f"close 1013 × {full}")
    return Verdict(
        Cause.CONNECT_LIMITED,
        Severity.BREAK,
        f"the server turned away {fmt.count(turned_away)}{_out_of(run)} connections as full"
        f" ({', '.join(parts)})",
        {
            "turned_away": turned_away,
            "http_503": limited.get(503, 0),
            "http_429": limited.get(429, 0),
            "close_1013": full,
            "connections": run.n_connections,
            "stable_receivers_not_connected": run.stable_unconnected,
        },
    )


def connect_failed(run: Run) -> Verdict | None:
    """Handshakes that failed for another reason (403, timeouts, ...)."""
    _, _, other = _connect_counts(run)
    failed = sum(other.values())
    if not failed:
        return None
    parts = ", ".join(f"{error} × {n}" for error, n in sorted(other.items(), key=lambda e: -e[1]))
    return Verdict(
        Cause.CONNECT_FAILED,
        Severity.BREAK,
        f"{fmt.count(failed)}{_out_of(run)} connections failed to open ({parts})",
        {
            "failed": failed,
            "errors": dict(other),
            "connections": run.n_connections,
            "stable_receivers_not_connected": run.stable_unconnected,
        },
    )


def rate_limited(run: Run) -> Verdict | None:
    errors = sum(count(mapping(s, "errors").get("rate_limited")) for s in run.senders)
    closed = max(run.closes(run.senders, RATE_LIMITED), run.close_codes[RATE_LIMITED])
    if not errors and not closed:
        return None
    how = either_and(
        f"{plural(errors, 'publish', 'publishes')} answered rate_limited" if errors else "",
        f"{plural(closed, 'connection')} closed with 4029 (rate limited)" if closed else "",
    )
    return Verdict(
        Cause.RATE_LIMITED,
        Severity.WARN if closed else Severity.INFO,
        f"the server rate-limited the senders: {how}",
        {"rate_limited_errors": errors, "close_4029": closed, "sent": run.total("sent")},
    )


def unexpected_closes(run: Run) -> Counter[int]:
    """Close codes on connections the server should have kept (slow ones are judged apart)."""
    found: Counter[int] = Counter()
    for conn in [*run.receivers, *run.senders]:
        close, kind = code(conn.get("close_code")), conn.get("kind")
        if close is None or close in EXPLAINED_CLOSES or kind == "slow":
            continue
        if kind == "churn" and close == 1006:
            continue  # a churning receiver may abort its own connection
        found[close] += 1
    return found


def unexpected_close(run: Run) -> Verdict | None:
    found = unexpected_closes(run)
    closed = sum(found.values())
    if not closed:
        return None
    cut_healthy = found[SLOW_CONSUMER]
    summary = f"the server closed {plural(closed, 'healthy connection')} with {close_counts(found)}"
    if cut_healthy:
        summary += (
            f"; {fmt.count(cut_healthy)} of them as slow consumers although they were reading"
        )
    return Verdict(
        Cause.UNEXPECTED_CLOSE,
        Severity.BREAK,
        summary,
        {
            "closed": closed,
            "close_codes": {str(close): n for close, n in found.items()},
            "lost": run.lost,
            "lost_stuck": run.total("lost_stuck"),
        },
    )
