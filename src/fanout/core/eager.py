"""Coroutines run at once, as far as they go without waiting.

Most calls a publish makes never wait when the broker is in this process: a task to
run them, or a timeout around them (a timer armed in the loop and disarmed again),
costs more than the call itself. ``run_eagerly`` runs a coroutine's first step now.
If that finished it, the value is there (``Finished``); otherwise what is left is an
awaitable that goes on exactly where the first step stopped, under whatever task or
timeout the caller then puts around it (Python 3.12's eager tasks, for 3.11).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Finished(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class Rest(Generic[T]):
    """The rest of a coroutine whose first step ran: await it once."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, T], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, T]:
        # What ``await coro`` does once it has started: hand each future the coroutine
        # waits on to the task, and the task's answer (or exception) back to it.
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: the coroutine sees it
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


def run_eagerly(coro: Coroutine[Any, Any, T]) -> Finished[T] | Rest[T]:
    """Run ``coro`` until it first waits. Exceptions it raises meanwhile propagate."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return Finished(stop.value)
    return Rest(coro, yielded)
