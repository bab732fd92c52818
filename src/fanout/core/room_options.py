"""Options per room, chosen by pattern: history size, presence, join/leave events, and
whether clients may publish. No I/O.

Written as ``PATTERN:key=value,key=value;PATTERN:...`` (the ``room_options`` setting),
first match wins; a pattern is a room name where ``*`` stands for any run of room
characters, as in token grants::

    chat.*:join_leave=on;typing.*:presence=off,history=1;news:client_publish=off

Keys: ``history`` (messages kept, 1 or more; default: the broker's limit),
``history_age`` (seconds a message is kept; default: however old), ``presence``
(on/off, default on), ``join_leave`` (on/off, default off: a roster costs O(n^2)
messages), ``client_publish`` (on/off, default on: off leaves publishing to the
application and the server API).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from fanout.core.broker import Retention

_PATTERN_CHARS = re.compile(r"[A-Za-z0-9_.:@\-*]{1,128}")
_SWITCH = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
_CACHE_ROOMS = 10_000


@dataclass(frozen=True, slots=True)
class RoomOptions:
    history: int | None = None  # None: the broker's own limit
    history_age_s: float | None = None  # None: kept however old
    presence: bool = True
    join_leave: bool = False
    client_publish: bool = True


DEFAULT = RoomOptions()


class RoomRules:
    """The options of each room, from the first pattern that matches it."""

    def __init__(self, spec: str = "") -> None:
        """ValueError with the reason for a spec that is not the documented shape."""
        self.spec = spec
        self._rules: list[tuple[re.Pattern[str], RoomOptions]] = [
            _entry(part.strip()) for part in spec.split(";") if part.strip()
        ]
        self._cache: dict[str, RoomOptions] = {}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def retention(self, room: str) -> Retention | None:
        """The room's own history limits, for the broker (None: the broker's)."""
        if not self._rules:
            return None  # no --rooms: every publish asks, so answer without a lookup
        opts = self.of(room)
        if opts.history is None and opts.history_age_s is None:
            return None
        return Retention(opts.history, opts.history_age_s)

    def of(self, room: str) -> RoomOptions:
        found = self._cache.get(room)
        if found is not None:
            return found
        found = next((opts for pattern, opts in self._rules if pattern.fullmatch(room)), DEFAULT)
        if len(self._cache) >= _CACHE_ROOMS:
            self._cache.clear()  # bounded; recomputing is cheap
        self._cache[room] = found
        return found


def _entry(text: str) -> tuple[re.Pattern[str], RoomOptions]:
    pattern, sep, settings = text.rpartition(":")
    if not sep or not _PATTERN_CHARS.fullmatch(pattern):
        raise ValueError(
            f"room option {text!r} is not PATTERN:key=value[,key=value] (a pattern is 1-128"
            " characters of A-Z a-z 0-9 _ . : @ - and *)"
        )
    opts = DEFAULT
    for item in settings.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq:
            raise ValueError(f"room option {item!r} for {pattern!r} is not key=value")
        if key == "history_age":
            try:
                age = float(value)
            except ValueError:
                age = -1.0
            if not age > 0:
                raise ValueError(f"history_age for {pattern!r} must be seconds > 0")
            opts = replace(opts, history_age_s=age)
        elif key == "history":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"history for {pattern!r} must be a whole number >= 1")
            opts = replace(opts, history=int(value))
        elif key in ("presence", "join_leave", "client_publish"):
            if value.lower() not in _SWITCH:
                raise ValueError(f"{key} for {pattern!r} must be on or off, not {value!r}")
            opts = replace(opts, **{key: _SWITCH[value.lower()]})
        else:
            raise ValueError(
                f"unknown room option {key!r} for {pattern!r}; known: history, history_age,"
                " presence, join_leave, client_publish"
            )
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.compile(regex), opts
