"""The embedded broker: contract topics and a produce/consume round trip."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stack.ephemeral import EphemeralKafka
from streaming.topics import TOPICS, ensure_topics


def test_contract_topics_exist_with_partitions_and_policies(kafka: EphemeralKafka) -> None:
    admin = AdminClient(kafka.client_config())
    metadata = admin.list_topics(timeout=10)
    resources = [ConfigResource(ResourceType.TOPIC, spec.name) for spec in TOPICS]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    for spec in TOPICS:
        assert spec.name in metadata.topics, spec.name
        assert len(metadata.topics[spec.name].partitions) == spec.partitions
        for key, value in spec.config.items():
            assert configs[spec.name][key].value == value, (spec.name, key)
    assert configs["smart-access.devices"]["cleanup.policy"].value == "compact"


def test_ensure_topics_is_idempotent(kafka: EphemeralKafka) -> None:
    assert ensure_topics(kafka.client_config()) == []


def test_produce_consume_round_trip(kafka: EphemeralKafka) -> None:
    marker = uuid.uuid4().hex
    producer = Producer({**kafka.client_config(), "enable.idempotence": True, "acks": "all"})
    delivered = []
    for i in range(20):
        producer.produce(
            "smart-access.events",
            key=f"device-{i % 4}",
            value=f'{{"marker": "{marker}", "n": {i}}}',
            on_delivery=lambda err, msg: delivered.append(err),
        )
    assert producer.flush(30) == 0
    assert delivered == [None] * 20

    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"round-trip-{marker}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["smart-access.events"])
    seen: dict[int, str] = {}
    try:
        for _ in range(200):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if len(seen) == 20:
                    break
                continue
            if marker.encode() in msg.value():
                n = int(msg.value().decode().split('"n": ')[1].rstrip("}"))
                seen[n] = msg.key().decode()
            if len(seen) == 20:
                break
    finally:
        consumer.close()
    assert seen == {i: f"device-{i % 4}" for i in range(20)}
