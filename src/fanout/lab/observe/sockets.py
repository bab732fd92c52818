"""Socket queues of a TCP server port, read from ``/proc/net/tcp`` and ``/proc/net/tcp6``.

No ``ss`` needed. Each row of those tables is one socket; for an ESTABLISHED socket
``tx_queue`` is the bytes written but not yet acknowledged by the peer (``ss``'s
Send-Q) and ``rx_queue`` the bytes received but not yet read by the application
(Recv-Q). On loopback the clients' sockets are in the same tables: only rows whose
*local* port is the server's port are the server's side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC_NET_TCP: tuple[Path, ...] = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

_ESTABLISHED = "01"


@dataclass(frozen=True)
class SocketQueue:
    """One server-side connection: the client's port and the bytes queued each way."""

    remote_port: int
    send_q: int
    recv_q: int


def _port(address: str) -> int:
    """The port of ``0100007F:1F40`` (IPv4) or ``000...0001:1F40`` (IPv6)."""
    return int(address.rpartition(":")[2], 16)


def parse_proc_net_tcp(text: str, port: int) -> list[SocketQueue]:
    """The ESTABLISHED sockets with local port ``port`` in one ``/proc/net/tcp*`` table.

    Lines that do not parse (the header, truncated rows) are skipped.
    """
    found: list[SocketQueue] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[3] != _ESTABLISHED:
            continue
        try:
            if _port(fields[1]) != port:
                continue
            tx, _, rx = fields[4].partition(":")
            found.append(SocketQueue(_port(fields[2]), int(tx, 16), int(rx, 16)))
        except ValueError:
            continue
    return found


def queues_on_port(port: int, *, tables: Iterable[Path] = PROC_NET_TCP) -> list[SocketQueue]:
    """The server-side ESTABLISHED sockets on ``port``, IPv4 and IPv6.

    A table that cannot be read (not Linux, no IPv6) counts as empty.
    """
    found: list[SocketQueue] = []
    for table in tables:
        try:
            text = table.read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        found.extend(parse_proc_net_tcp(text, port))
    return found
