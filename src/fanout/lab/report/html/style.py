"""The page's style sheet: inlined, so the report loads nothing."""

from __future__ import annotations

from fanout.lab.report.plots import SVG_CSS

CSS = """
:root { --break: #b00020; --warn: #a15c00; --info: #1f5fa8; --ok: #1b7f3b; --muted: #666; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.5rem; color: #222; background: #fff; }
h1 { margin: 0 0 .25rem; font-size: 1.7rem; }
h2 { margin: 2.5rem 0 .5rem; padding-bottom: .25rem; border-bottom: 2px solid #ddd; }
h3 { margin: 1.5rem 0 .5rem; font-size: 1.05rem; }
section.doc { margin-bottom: 3rem; }
.muted, .target { color: var(--muted); }
.target code { color: #222; }
table { border-collapse: collapse; margin: .25rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kv th { width: 14rem; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: 12px;
         font-weight: 600; color: #fff; vertical-align: middle; }
.sev-break { background: var(--break); } .sev-warn { background: var(--warn); }
.sev-info { background: var(--info); } .sev-ok { background: var(--ok); }
.badge.invalid { background: var(--break); } .badge.valid { background: var(--ok); }
.verdict { border-left: 5px solid var(--info); padding: .4rem .8rem; margin: .6rem 0;
           background: #fafafa; }
.verdict.break { border-color: var(--break); } .verdict.warn { border-color: var(--warn); }
.verdict.ok { border-color: var(--ok); }
.verdict .cause { font-family: ui-monospace, monospace; font-weight: 600; }
.verdict table { margin: .4rem 0 .2rem; }
.invalid-banner { border: 2px solid var(--break); background: #fdecee; padding: .6rem 1rem;
                  margin: .75rem 0; }
.invalid-banner strong { color: var(--break); }
.lost { color: var(--break); font-weight: 600; }
figure { margin: .5rem 0 1.25rem; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
.missing { color: var(--muted); font-style: italic; }
pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; word-break: break-word; }
details { margin: .3rem 0; }
summary { cursor: pointer; }
nav ol { padding-left: 1.25rem; }
"""
CSS += SVG_CSS
