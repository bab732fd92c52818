"""``bench/RESULTS.md`` holds one section per benchmark script; each rewrites only its own.

A section sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; the text
outside the sections (the findings written by hand) is kept as it is.
"""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    current = path.read_text() if path.exists() else ""
    start = current.find(begin)
    stop = current.find(end, start)
    if start >= 0 and stop >= 0:
        updated = current[:start] + block + current[stop + len(end) :]
    else:
        updated = current.rstrip() + ("\n\n" if current.strip() else "") + block + "\n"
    path.write_text(updated)
