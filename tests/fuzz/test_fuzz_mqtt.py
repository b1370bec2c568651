"""Fleet payloads the hub ingests, fuzzed (docs/mqtt.md's messages with fields replaced or removed, raw bytes,
hostile JSON texts; JSON and msgpack): every one is ingested or counted invalid, no handler raises, the
flush never fails, and the fleet view stays strict JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from hgr.common.messaging import topics
from tests.fuzz.conftest import Services, fuzz
from tests.fuzz.fuzz_inputs import dumps_loose, fleet_docs, odd_json_texts, pack

KINDS = ["status", "metrics", "events"]


@given(data=st.data())
@fuzz(1.5)
def test_fleet_payloads(bounded: Services, data: st.DataObject) -> None:
    fleet, bus = bounded.hub.fleet, bounded.bus
    assert fleet is not None
    errors = bus.handler_errors
    kind = data.draw(st.sampled_from(KINDS))
    edge = data.draw(st.sampled_from(["cam-1", "cam-2", "x" * 64]))
    form = data.draw(st.sampled_from(["json", "msgpack", "odd", "bytes"]))
    content_type: str | None = None
    if form in ("json", "msgpack"):
        doc: Any = data.draw(fleet_docs(kind))
        if form == "json":
            payload = dumps_loose(doc).encode("utf-8", "surrogatepass")
        else:
            payload = pack(doc)
            content_type = topics.CONTENT_TYPES["msgpack"]
    elif form == "odd":
        payload = data.draw(odd_json_texts()).encode("utf-8", "surrogatepass")
    else:
        payload = data.draw(st.binary(max_size=300))

    async def ingest() -> tuple[int, dict[str, Any]]:
        before = fleet.ingested["invalid"]
        bus.publish(topics.edge_topic(bounded.settings.mqtt_topic_prefix, edge, kind), payload, qos=1,
                    content_type=content_type)
        for _ in range(5):  # the bus delivers on a later loop turn
            await asyncio.sleep(0)
        await fleet.flush()
        return fleet.ingested["invalid"] - before, await fleet.fleet_view()

    invalid, view = bounded.run(ingest)
    event(f"{kind}: {'invalid' if invalid else 'ingested'}")
    assert bus.handler_errors == errors, "a payload raised in the hub's handler"
    assert fleet.last_flush_error is None, fleet.last_flush_error
    json.dumps(view, allow_nan=False)
