"""Python tracebacks and the last lines in a server's output.

A server's log can be anything: partial (cut mid-traceback), interleaved, binary. The
scanner never raises on such input; what it cannot recognise as a whole traceback it
skips. A traceback is ``Traceback (most recent call last):``, indented frames, and one
unindented ``Type: message`` line; chained tracebacks ("During handling of the above
exception..." / "The above exception was the direct cause...") belong to one record,
named after the last exception (the one that propagated). The line just before a
traceback is kept with it when it announces it (uvicorn's ``Exception in ASGI
application``, ``logging.exception``'s message).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TRACEBACK = "Traceback (most recent call last):"
GROUP_TRACEBACK = "Exception Group Traceback (most recent call last):"
CHAIN_LINES = frozenset(
    {
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
MAX_TEXT_CHARS = 4096
MAX_RECORDS = 20

_MAX_LINE_CHARS = 1000
_HEAD_LINES = 40
_TAIL_LINES = 120
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::\s?(.*))?")
_GROUP_EXCEPTION_LINE = re.compile(r"\s*\| ([A-Za-z_][\w.]*)(?::\s?(.*))?")
_PREAMBLE = re.compile(r"exception|error|traceback", re.IGNORECASE)


@dataclass(frozen=True)
class ExceptionRecord:
    """One distinct (type, message) and how often it occurred.

    ``text`` is the first occurrence in full (preamble and chain included), cut in the
    middle to about ``MAX_TEXT_CHARS``.
    """

    type: str
    message: str
    count: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {"type": self.type, "message": self.message, "count": self.count, "text": self.text}


class _Block:
    """The lines of one traceback being read, bounded in memory."""

    def __init__(self) -> None:
        self.head: list[str] = []
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.cut = 0

    def add(self, line: str) -> None:
        line = line[:_MAX_LINE_CHARS]
        if len(self.head) < _HEAD_LINES:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.cut += 1
        self.tail.append(line)

    def text(self) -> str:
        lines = list(self.head)
        if self.cut:
            lines.append(f"... [{self.cut} lines cut] ...")
        lines.extend(self.tail)
        return _cap("\n".join(lines))


def _cap(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    head = MAX_TEXT_CHARS // 4
    tail = MAX_TEXT_CHARS - head - 40
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"


@dataclass
class _Seen:
    count: int
    text: str


class _Scanner:
    """A line-at-a-time state machine: idle, frames, group, after, chain."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], _Seen] = {}
        self.state = "idle"
        self.prev: str | None = None  # last non-blank line while idle
        self.block = _Block()
        self.found: tuple[str, str] | None = None  # (type, message) of the block so far
        self.pending: list[str] = []  # blank/chain lines after an exception line
        self.group_named = False
        self.framed = False  # a frame line seen since the last "Traceback" line

    def feed(self, line: str) -> None:
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        state = self.state
        if state == "frames":
            self._frames(line)
        elif state == "group":
            self._group(line)
        elif state == "after":
            self._after(line)
        elif state == "chain":
            self._chain(line)
        else:
            self._idle(line)

    def finish(self) -> list[ExceptionRecord]:
        if self.state != "idle":
            self._emit()
        return [
            ExceptionRecord(type_, message, seen.count, seen.text)
            for (type_, message), seen in self.records.items()
        ]

    def _idle(self, line: str) -> None:
        if TRACEBACK not in line:
            if line.strip():
                self.prev = line
            return
        self.block = _Block()
        self.found = None
        if self.prev is not None and _PREAMBLE.search(self.prev):
            self.block.add(self.prev)
        self.prev = None
        self._open(line)

    def _open(self, line: str) -> None:
        self.block.add(line)
        self.state = "group" if GROUP_TRACEBACK in line else "frames"
        self.group_named = False
        self.framed = False

    def _frames(self, line: str) -> None:
        if line[:1] in (" ", "\t"):
            self.block.add(line)
            self.framed = True
            return
        match = _EXCEPTION_LINE.fullmatch(line.rstrip())
        if match is None or not self.framed or TRACEBACK in line:
            self._abandon(line)  # cut or interleaved: not a whole traceback
            return
        self.block.add(line)
        self.found = (match.group(1), (match.group(2) or "").strip()[:_MAX_LINE_CHARS])
        self.state = "after"
        self.pending = []

    def _group(self, line: str) -> None:
        if line[:1] in (" ", "\t"):
            self.block.add(line)
            if not self.group_named:  # the group's own line comes before its sub-exceptions
                match = _GROUP_EXCEPTION_LINE.fullmatch(line.rstrip())
                if match is not None:
                    self.found = (match.group(1), (match.group(2) or "").strip())
                    self.group_named = True
            return
        # The boxed group ends at the first unindented line.
        if self.found is None:
            self._abandon(line)
            return
        self.state = "after"
        self.pending = []
        self._after(line)

    def _after(self, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            self.pending.append(line)
        elif stripped in CHAIN_LINES:
            self.pending.append(line)
            self.state = "chain"
        else:
            self._emit()
            self._idle(line)

    def _chain(self, line: str) -> None:
        if not line.strip():
            self.pending.append(line)
            return
        if TRACEBACK in line:
            for kept in self.pending:
                self.block.add(kept)
            self.pending = []
            self._open(line)
            return
        self._emit()
        self._idle(line)

    def _abandon(self, line: str) -> None:
        """The traceback being read was cut: keep what a complete earlier link named."""
        self._emit()
        self._idle(line)

    def _emit(self) -> None:
        found, self.found = self.found, None
        self.state = "idle"
        self.pending = []
        if found is None:
            return
        seen = self.records.get(found)
        if seen is not None:
            seen.count += 1
        elif len(self.records) < MAX_RECORDS:
            self.records[found] = _Seen(1, self.block.text())


def _scan(lines: Iterable[str]) -> list[ExceptionRecord]:
    scanner = _Scanner()
    for line in lines:
        scanner.feed(line)
    return scanner.finish()


def extract_exceptions(text: str) -> list[ExceptionRecord]:
    """The distinct tracebacks in ``text``, in order of first appearance (at most 20)."""
    return _scan(text.splitlines())


def _file_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        while line := file.readline(65536):  # bounded: a huge line comes in pieces
            yield line.rstrip("\r\n")


def exceptions_in_file(path: Path) -> list[ExceptionRecord]:
    """``extract_exceptions`` over a log file, streamed; [] when it cannot be read."""
    try:
        return _scan(_file_lines(path))
    except OSError:
        return []


def tail(text: str, n: int) -> list[str]:
    """The last ``n`` lines of ``text``."""
    if n <= 0:
        return []
    return text.splitlines()[-n:]


def tail_file(path: Path, n: int, *, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``n`` lines of a log file (reading at most its last ``max_bytes``)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            start = max(0, size - max_bytes)
            file.seek(start)
            data = file.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    if start > 0:
        text = text.partition("\n")[2]  # the first line was cut
    return tail(text, n)
