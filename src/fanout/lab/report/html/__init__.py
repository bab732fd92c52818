"""The report as one self-contained HTML page: inline CSS, inline SVG, no URL fetched.

Every string that comes from a results file goes through :func:`html.escape` (the file
can hold hostile text: a server's exception message, its log lines, a URL). Only the
markup built here and the SVG rendered by matplotlib (which escapes its text) are
inserted as they are.

* :mod:`.page`: the page and its contents; :mod:`.style`: its CSS;
* :mod:`.run`, :mod:`.sweep`, :mod:`.comparison`: a section per run, per sweep, and one
  comparing the runs; :mod:`.server` and :mod:`.provenance`: parts of those sections;
* :mod:`.markup`: escaping, tables, badges, figures.
"""

from __future__ import annotations

from fanout.lab.report.html.page import render_html

__all__ = ["render_html"]
