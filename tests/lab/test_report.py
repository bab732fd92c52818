"""``fanout report``: results files in, one self-contained HTML page and a terminal summary out."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
from rich.console import Console

from fanout.lab.report import (
    ReportError,
    RunDoc,
    SweepDoc,
    compare_runs,
    cpu_over_time,
    deliveries_over_time,
    derive_names,
    latency_over_time,
    load_results,
    loss_heatmap,
    p99_heatmap,
    print_summary,
    render_html,
    render_run_summary,
    server_memory_over_time,
    socket_queues_over_time,
    sweep_pairs,
    write_report,
)
from fanout.lab.report.plots.over_time import latency_scale

FIXTURES = Path(__file__).parent / "fixtures"
HEALTHY = FIXTURES / "healthy.json"
HOL = FIXTURES / "hol_blocking.json"
INVALID = FIXTURES / "invalid.json"
BARE = FIXTURES / "bare.json"  # server: null, empty timeline, no verdicts
SWEEP = FIXTURES / "sweep.json"  # 2x2 size x rate, the (64 KiB, 1000/s) cell broke


def run(path: Path) -> RunDoc:
    doc = load_results(path)
    assert isinstance(doc, RunDoc)
    return doc


def sweep() -> SweepDoc:
    doc = load_results(SWEEP)
    assert isinstance(doc, SweepDoc)
    return doc


def report(*paths: Path) -> str:
    docs = [load_results(p) for p in paths]
    return render_html(docs, derive_names(docs))


def section(page: str, anchor: str) -> str:
    """The HTML of one ``<section id=...>`` of the page."""
    start = page.index(f'id="{anchor}"')
    return page[start : page.index("</section>", start)]


def tags(page: str) -> str:
    """Only the markup of the page: its tags, without the (escaped) text between them."""
    return "".join(re.findall(r"<[^<>]+>", page))


def recorded(paths: list[Path], width: int = 140) -> str:
    console = Console(record=True, width=width, color_system=None)
    docs = [load_results(p) for p in paths]
    print_summary(docs, derive_names(docs), console)
    return console.export_text()


HOSTILE_NAME = "<b onclick=alert(1)>evil$name_"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``fanout report`` on every fixture (four runs, a sweep, and a copy of the
    head-of-line run under a hostile file name): the report file and what it printed."""
    folder = tmp_path_factory.mktemp("report")
    hostile = folder / f"{HOSTILE_NAME}.json"
    shutil.copy(HOL, hostile)
    console = Console(record=True, width=140, color_system=None)
    write_report([HEALTHY, HOL, INVALID, BARE, SWEEP, hostile], folder / "report.html", console)
    return folder / "report.html", console.export_text()


@pytest.fixture(scope="module")
def everything(written: tuple[Path, str]) -> str:
    return written[0].read_text(encoding="utf-8")


# --- the page --------------------------------------------------------------------------


def test_the_report_is_one_html_file_that_fetches_nothing(everything: str) -> None:
    assert everything.startswith("<!DOCTYPE html>")
    assert everything.count("<svg") >= 10
    markup = tags(everything).lower()
    for tag in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "<image", "@import"):
        assert tag not in markup
    # The only links are anchors inside the page (contents, SVG markers and clip paths).
    targets = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", markup)
    assert targets
    assert all(t.startswith("#") for t in targets), {t for t in targets if t[:1] != "#"}
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", everything))


def test_writing_the_report_prints_the_summary_and_leaves_no_temporary_file(
    written: tuple[Path, str],
) -> None:
    out, printed = written
    assert "report written to" in printed
    assert str(out) in printed.replace("\n", "")
    assert "hol_blocking" in printed
    assert [p.name for p in out.parent.iterdir() if p.suffix == ".tmp"] == []


@pytest.fixture(scope="module")
def healthy_page() -> str:
    return report(HEALTHY)


def test_a_report_of_a_healthy_run_holds_no_url_at_all(healthy_page: str) -> None:
    assert "http://" not in healthy_page
    assert "https://" not in healthy_page


def test_every_plot_id_is_unique_in_the_page(everything: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', everything)
    assert len(ids) == len(set(ids))


def test_a_run_shows_its_verdicts_first_then_totals_and_latency(everything: str) -> None:
    hol = section(everything, "doc-2")
    assert hol.index("Verdicts") < hol.index("Totals") < hol.index("Latency")
    for cause in ("hol_blocking", "loss", "handler_exception", "latency_slo"):
        assert cause in hol
    assert hol.index("hol_blocking") < hol.index("latency_slo")  # breaks before warnings
    assert "one stalled reader stalled the broadcast for everyone" in hol
    assert "slow_send_q_bytes" in hol  # the evidence, as a table, in human units
    assert "3.8 MiB" in hol
    assert "4000000" not in hol


def test_the_totals_name_the_loss_and_its_kind(everything: str) -> None:
    hol = section(everything, "doc-2")
    assert "412,345 (holes 0 / stuck 412,345), 92% of expected" in hol
    assert "37,655" in hol  # delivered
    assert "1006×5" in hol  # close codes
    assert "14,200 ms" in hol  # p99
    assert "missed" in hol  # against the 100 ms SLO


def test_a_run_gets_its_plots_with_units(everything: str) -> None:
    hol = section(everything, "doc-2")
    assert hol.count("<svg") == 5
    for words in (
        "latency (ms)",
        "deliveries per second",
        "RSS (MiB)",
        "send-q slow",
        "recv-q total",
        "CPU (% of one core)",
        "time since sending started (s)",
    ):
        assert words in hol


def test_hostile_text_from_the_server_is_shown_not_run(everything: str) -> None:
    assert "<script>" not in everything
    assert "Set changed size during iteration &lt;script&gt;alert(&#x27;pwned&#x27;)" in everything
    assert "&lt;script&gt;alert(&#x27;evidence&#x27;)" in everything
    assert "<img src=x" not in everything
    assert "Received: &lt;img src=x onerror=alert(1)&gt;" in everything
    assert "onclick" not in tags(everything)


def test_a_hostile_file_name_is_escaped_in_the_tables_and_the_plots(everything: str) -> None:
    escaped = "&lt;b onclick=alert(1)&gt;evil$name_"
    assert f"<td>{escaped}</td>" in section(everything, "comparison")
    assert f"<h2>{escaped} " in section(everything, "doc-6")
    plotted = everything[everything.index("<svg", everything.index('id="comparison"')) :]
    assert f">{escaped}</text>" in plotted  # a bar's label, as text, not mathtext


def test_an_invalid_run_is_marked_with_its_reasons(everything: str) -> None:
    invalid = section(everything, "doc-3")
    assert "INVALID RUN" in invalid
    assert "generator process 0 at 99% CPU for 9.5 s of 10 s" in invalid
    assert invalid.index("INVALID RUN") < invalid.index("Verdicts")
    assert "generator_saturated" in invalid
    assert "INVALID" not in section(everything, "doc-1")


def test_several_runs_are_compared_before_the_runs(everything: str) -> None:
    assert everything.index('id="comparison"') < everything.index('id="doc-1"')
    comparison = section(everything, "comparison")
    assert "Comparison of 5 runs" in comparison  # the sweep is not a run
    for name in ("healthy", "hol_blocking", "invalid", "bare"):
        assert f"<td>{name}</td>" in comparison
    assert "<svg" in comparison
    assert "Server CPU per delivery" in comparison
    assert "Close codes sent by the server" in comparison


def test_a_single_run_has_no_comparison(healthy_page: str) -> None:
    assert 'id="comparison"' not in healthy_page
    assert "every stable receiver got every message" in healthy_page


def test_a_sweep_shows_its_breaking_points_heatmaps_and_steps(everything: str) -> None:
    part = section(everything, "doc-5")
    breaking = part[part.index("Breaking points") : part.index("Heatmaps")]
    assert "first break" in breaking
    assert "size 64 KiB, receivers 10, no slow receivers" in breaking
    assert "1,000/s" in breaking
    assert "loss 120; close 1009" in breaking

    heatmaps = part[part.index("Heatmaps") : part.index("Steps, in the order")]
    assert heatmaps.count("<svg") == 2  # loss and p99 for the one (receivers, slow) pair
    assert "Lost messages, 10 receivers, no slow receivers" in heatmaps
    assert "BROKE" in heatmaps
    assert "120 lost" in heatmaps
    assert "340 ms" in heatmaps

    steps = part[part.index("Steps, in the order") : part.index("Base configuration")]
    assert steps.count("<tr>") == 5  # header + 4 steps
    assert steps.count(">broke</span>") == 1
    assert "p99 340 ms &gt; 100 ms" in steps


def test_a_sweep_gets_a_heatmap_per_receivers_and_slow_with_missing_cells_marked() -> None:
    data: dict[str, Any] = json.loads(SWEEP.read_text())
    more = copy.deepcopy(data["steps"][:3])  # the (64 KiB, 1000/s) step did not run at 100
    for step in more:
        step["point"]["receivers"] = 100
    data["steps"] += more
    data["axes"]["receivers"] = [10, 100]
    doc = SweepDoc(SWEEP, data)

    assert sweep_pairs(doc) == [(10, 0.0), (100, 0.0)]
    svg = loss_heatmap(doc, 100, 0.0) or ""
    assert "100 receivers, no slow receivers" in svg
    assert "not run" in svg
    assert "BROKE" not in svg
    assert render_html([doc], ["wide"]).count("<svg") == 4


def test_a_run_without_a_server_or_a_timeline_still_renders_and_says_why(everything: str) -> None:
    bare = section(everything, "doc-4")
    assert "<svg" not in bare
    assert "no timeline samples" in bare
    assert "no server was observed for this run (server: null)" in bare
    assert "No verdicts recorded" in bare
    assert "refused×3" in bare


# --- reading the files -----------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "fanout.lab.run/2", "totals": {}}', "unknown schema 'fanout.lab.run/2'"),
        ('{"totals": {}}', "no 'schema' field"),
        ("PK\x03\x04 this is a zip, not json", "not a JSON results file"),
        ("[1, 2, 3]", "not a results document (JSON a list)"),
        ('{"schema": "fanout.lab.run/1", "timeline": "soon"}', "'timeline' must be a list"),
        ('{"schema": "fanout.lab.sweep/1", "steps": {}}', "'steps' must be a list"),
    ],
    ids=["unknown schema", "no schema", "garbage", "not an object", "bad run", "bad sweep"],
)
def test_a_file_that_is_not_a_results_document_is_refused_by_name(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path, "odd.json", content)
    with pytest.raises(ReportError) as info:
        load_results(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ReportError, match=re.escape(f"{missing}: no such file")):
        load_results(missing)


def test_nothing_is_written_when_one_file_is_bad(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", "{")
    out = tmp_path / "report.html"
    with pytest.raises(ReportError, match=re.escape(str(bad))):
        write_report([HEALTHY, bad], out, Console(record=True))
    assert not out.exists()


def test_missing_optional_sections_read_as_empty() -> None:
    doc = run(BARE)
    assert doc.server is None
    assert doc.server_samples == []
    assert doc.timeline == []
    assert doc.verdicts == []
    assert doc.invalid_reasons == []
    assert doc.valid


def test_runs_are_named_after_their_files_and_told_apart_when_they_clash(tmp_path: Path) -> None:
    for folder, url in (("a", "ws://127.0.0.1:8000/ws"), ("b", "ws://127.0.0.1:8001/ws")):
        data: dict[str, Any] = json.loads(HEALTHY.read_text())
        data["config"]["url"] = url
        (tmp_path / folder).mkdir()
        write(tmp_path / folder, "run.json", json.dumps(data))
    docs = [load_results(tmp_path / f / "run.json") for f in ("a", "b")]
    docs.append(load_results(HOL))
    assert derive_names(docs) == [
        "run (ws://127.0.0.1:8000/ws plain)",
        "run (ws://127.0.0.1:8001/ws plain)",
        "hol_blocking",
    ]


# --- the plots -------------------------------------------------------------------------


def test_every_plot_is_an_svg_string_and_no_figure_is_left_open() -> None:
    hol, healthy, doc = run(HOL), run(HEALTHY), sweep()
    svgs = [
        latency_over_time(hol.timeline, 100.0),
        deliveries_over_time(hol.timeline),
        server_memory_over_time(hol.server_samples),
        socket_queues_over_time(hol.server_samples),
        cpu_over_time(hol.timeline, hol.server_samples),
        loss_heatmap(doc, 10, 0.0),
        p99_heatmap(doc, 10, 0.0),
        compare_runs([healthy, hol], ["healthy", "hol"]),
    ]
    for svg in svgs:
        assert svg is not None
        assert svg.startswith("<svg")
        assert svg.endswith("</svg>")
    assert plt.get_fignums() == []


def test_a_plot_with_nothing_to_draw_is_none() -> None:
    assert latency_over_time([]) is None
    assert deliveries_over_time([{"t": 0.5}]) is None
    assert server_memory_over_time([]) is None
    assert socket_queues_over_time([]) is None
    assert cpu_over_time([], []) is None
    assert loss_heatmap(sweep(), 999, 0.0) is None


def test_the_latency_plot_switches_to_a_log_scale_when_latency_explodes() -> None:
    assert "log scale" in (latency_over_time(run(HOL).timeline) or "")
    assert "log scale" not in (latency_over_time(run(HEALTHY).timeline) or "")


def _texts(svg: str) -> list[str]:
    return re.findall(r">([^<>]+)</text>", svg)


def test_the_latency_plot_is_scaled_to_the_data_and_names_a_far_slo_at_its_top() -> None:
    # 0.8 to 6 ms against a 100 ms objective: the axis is the data's, not the SLO's.
    timeline = run(HEALTHY).timeline
    values = [float(t[k]) for t in timeline for k in ("p50_ms", "p99_ms", "max_ms")]
    scale = latency_scale(values, 100.0)
    assert scale is not None
    assert not scale.log
    assert not scale.slo_drawn
    assert 6.0 < scale.top < 10.0
    svg = latency_over_time(timeline, 100.0) or ""
    assert "p99 SLO 100 ms: above this scale" in "".join(_texts(svg))
    assert "100" not in _texts(svg)  # no tick up at the objective


def test_an_slo_near_the_data_is_drawn_as_a_line_at_its_height() -> None:
    scale = latency_scale([40.0, 70.0, 80.0], 100.0)
    assert scale is not None
    assert scale.slo_drawn
    assert scale.top >= 100.0
    over = latency_scale([150.0, 400.0], 100.0)  # missed: the line is among the data
    assert over is not None
    assert over.slo_drawn
    timeline = [{"t": 0.5 * i, "p50_ms": 40.0, "p99_ms": 70.0, "max_ms": 80.0} for i in range(6)]
    svg = latency_over_time(timeline, 100.0) or ""
    assert "p99 SLO 100 ms" in _texts(svg)  # the line's legend entry
    assert "above this scale" not in svg


# --- the terminal ----------------------------------------------------------------------


def test_the_terminal_summary_shows_verdicts_totals_and_latency() -> None:
    out = recorded([HEALTHY, HOL])
    for words in ("hol_blocking", "one stalled reader stalled", "412,345", "14,200", "1006×5"):
        assert words in out
    assert "slow_send_q_bytes=3.8 MiB" in out  # evidence in human units
    assert "Comparison" in out


def test_the_terminal_marks_invalid_runs_with_their_reasons() -> None:
    out = recorded([INVALID])
    assert "INVALID" in out
    assert "generator process 0 at 99% CPU" in out
    assert "Comparison" not in out


def test_the_terminal_summary_of_a_sweep_lists_its_breaking_points() -> None:
    out = recorded([SWEEP])
    assert "4 steps, 1 broke" in out
    assert "Breaking points" in out
    assert "64 KiB" in out
    assert "loss 120; close 1009" in out


def test_the_run_summary_prints_markup_in_the_json_as_written() -> None:
    data: dict[str, Any] = json.loads(HOL.read_text())
    data["verdicts"][0]["summary"] = "[bold red]boom[/bold red] and [link=x]y[/link]"
    doc = RunDoc(HOL, data)
    console = Console(record=True, width=160, color_system=None)
    console.print(render_run_summary(doc, "from bench"))
    out = console.export_text()
    assert "from bench" in out
    assert "[bold red]boom[/bold red] and [link=x]y[/link]" in out
    assert "<script>alert('evidence')</script>" in out


def test_a_run_summary_straight_from_bench_is_called_a_run() -> None:
    data: dict[str, Any] = json.loads(HEALTHY.read_text())
    console = Console(record=True, width=120, color_system=None)
    console.print(render_run_summary(RunDoc(Path("ws://127.0.0.1:8000/ws"), data)))
    first = console.export_text().splitlines()[0]
    assert first.startswith("run  valid  ws://127.0.0.1:8000/ws (plain)")


def test_the_memory_plot_draws_the_servers_own_buffer_gauges_beside_its_rss() -> None:
    samples = run(HOL).server_samples
    gauges = [{"t": t, "values": {"fanout_outbox_bytes": t * 1e6}} for t in range(5)]
    with_gauges = server_memory_over_time(samples, gauges) or ""
    assert "its buffers (fanout_outbox_bytes)" in _texts(with_gauges)
    assert "its buffers" not in (server_memory_over_time(samples) or "")
