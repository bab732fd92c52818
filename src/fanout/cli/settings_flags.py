"""Command-line flags generated from ``Settings`` fields, for every command that takes
settings (``serve``: all of them; ``publish``: the ones an emitter uses)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from fanout.settings import Settings, parse_value


def add_settings_flags(
    parser: argparse.ArgumentParser,
    title: str,
    description: str,
    names: Iterable[str] | None = None,
) -> None:
    """``--<name>`` for each setting in ``names`` (default: every one); each defaults to
    None, so that only what was given overrides the environment."""
    group = parser.add_argument_group(title, description)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in fields if names is None else names:
        f = fields[name]
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.default != "":  # an empty default means "not set": the help says what then
            help_text += f" (default: {f.default})"
        if isinstance(f.default, bool):
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(
                flag,
                dest=name,
                default=None,
                metavar=type(f.default).__name__.upper(),
                type=_converter(f),
                help=help_text,
            )


def _converter(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return parse_value(f, raw)
        except ValueError as exc:
            # argparse prints the message of ArgumentTypeError, not of ValueError.
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return convert
