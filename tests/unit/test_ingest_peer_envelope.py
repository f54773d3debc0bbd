"""The ingest benchmark's peer gets every field our sink lands, from the same messages."""

from __future__ import annotations

import json

from benchmarks import peer
from streaming.simulator import Simulator, SimulatorConfig
from streaming.sink import _KAFKA_COLUMNS, COLUMNS, TABLES

KAFKA_COLUMNS = set(_KAFKA_COLUMNS)  # the Kafka metadata every landing table starts with
# what only our sink can know: the v0 guide's own event id (the peer reads v1 messages)
OURS_ONLY = {"source_event_id"}


def test_the_peer_lands_every_payload_column_of_our_tables() -> None:
    for topic, table in TABLES.items():
        ours = [c for c in COLUMNS[table] if c not in KAFKA_COLUMNS | OURS_ONLY]
        assert peer.TABLES[topic] == table
        assert peer.FIELDS[topic] == ours, topic


def test_the_envelope_carries_each_message_unchanged() -> None:
    sim = Simulator(SimulatorConfig(households=50, rate=100, seed=7))
    seen: set[str] = set()
    for _ in range(6000):
        message = sim.next()
        topic, value = peer.envelope(message.topic, message.value)
        body = json.loads(value)
        original = json.loads(message.value)
        assert topic == peer.TOPICS[message.topic]
        # nothing the device sent is dropped, nothing is changed
        assert set(original) <= set(body["payload"]), set(original) - set(body["payload"])
        assert {k: body["payload"][k] for k in original} == original
        fields = body["schema"]["fields"]
        assert [f["field"] for f in fields] == list(body["payload"])
        for field in fields:
            if not field["optional"]:
                assert body["payload"][field["field"]] is not None, field
        seen.add(message.topic)
    assert seen == set(TABLES)
