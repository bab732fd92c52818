"""/metrics the standard way: every family with HELP, units in the names, counters in
``_total``; the page parses with prometheus-client's text and OpenMetrics parsers;
closes, refusals, drops and broker errors are counted by kind; latency histograms."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from fanout.settings import Settings
from tests.support.servers import running_hub
from tests.support.wsclient import connect_v1, recv_json, send_json, subscribe


def _samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[_key(sample)] = sample.value
    return found


def _key(sample: Sample) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}" if labels else sample.name


async def test_the_page_parses_with_both_parsers_and_every_family_has_help() -> None:
    async with running_hub(Settings()) as server, await connect_v1(server.ws) as ws:
        await subscribe(ws, "r")
        for i in range(3):
            await send_json(ws, {"type": "publish", "room": "r", "data": i, "id": f"p{i}"})
        for _ in range(6):
            await recv_json(ws)
        async with httpx.AsyncClient() as http:
            text = (await http.get(server.url + "/metrics")).text
            answer = await http.get(
                server.url + "/metrics", headers={"Accept": "application/openmetrics-text"}
            )
    families = list(text_string_to_metric_families(text))
    assert all(f.documentation for f in families), [f.name for f in families]
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    open_families = {f.name: f for f in openmetrics_families(answer.text)}  # type: ignore[no-untyped-call]
    assert open_families["fanout_published"].type == "counter"
    assert open_families["fanout_connections"].type == "gauge"
    for family in families:
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
    samples = _samples(text)
    assert samples["fanout_published_total"] == 3
    assert samples["fanout_deliveries_total"] == 3
    assert samples["fanout_publish_latency_seconds_count"] == 3
    assert samples['fanout_publish_latency_seconds_bucket{le="+Inf"}'] == 3
    assert samples["fanout_write_wait_seconds_count"] >= 1
    assert 0 < samples["fanout_history_bytes"] < 3 * 200  # three small messages kept
    # The bounds it runs with, for a load tester to weigh its memory against.
    defaults = Settings()
    assert samples["fanout_outbox_limit_bytes"] == defaults.outbox_max_bytes
    assert samples["fanout_history_room_limit_messages"] == defaults.history_max_messages
    assert samples["fanout_history_limit_bytes"] == defaults.history_total_max_bytes


async def test_closes_refusals_and_dropped_frames_are_counted_by_kind() -> None:
    settings = Settings(max_connections_per_ip=1)
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as ws:
            await subscribe(ws, "r")
            with pytest.raises(Exception, match=r"1013|rejected"):
                async with await connect_v1(server.ws) as second:
                    await recv_json(second)
        async with httpx.AsyncClient() as http:
            samples = _samples((await http.get(server.url + "/metrics")).text)
    assert samples['fanout_refusals_total{reason="per_ip"}'] == 1
    assert samples['fanout_closes_total{code="1000"}'] >= 1
    assert samples['fanout_broker_errors_total{kind="unavailable"}'] == 0
