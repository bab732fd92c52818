"""Short labels for the documents in one report (table headers, legends, bar labels)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from fanout.lab.document import RunDoc, SweepDoc, text


def describe(doc: RunDoc | SweepDoc) -> str:
    """What the run was pointed at: ``config.url`` and mode (``base_config`` for a sweep)."""
    config = doc.config if isinstance(doc, RunDoc) else doc.base_config
    url = text(config, "url")
    mode = text(config, "mode")
    return " ".join(part for part in (url, mode) if part)


def derive_names(docs: Sequence[RunDoc | SweepDoc]) -> list[str]:
    """One distinct label per document.

    The file name without ``.json`` when the names differ; when two files share a name
    (``a/run.json``, ``b/run.json``), the URL and mode are added, then the parent
    folder, then a number, until every label is different.
    """
    names = [doc.path.stem or doc.path.name for doc in docs]

    def with_target(i: int, name: str) -> str:
        target = describe(docs[i])
        return f"{name} ({target})" if target else name

    def with_folder(i: int, name: str) -> str:
        folder = docs[i].path.parent.name
        return f"{folder}/{name}" if folder else name

    def with_number(i: int, name: str) -> str:
        return f"{name} #{i + 1}"

    for step in (with_target, with_folder, with_number):
        seen = Counter(names)
        if all(n == 1 for n in seen.values()):
            break
        names = [step(i, name) if seen[name] > 1 else name for i, name in enumerate(names)]
    return names
