"""The dead-letter watcher's burst filter and its serialization (no broker here; the
e2e test runs it in the real triggerer against the real broker)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator

from smart_access.dead_letter_watch import DeadLetterBurstTrigger


async def _feed(count: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for n in range(count):
        if pause:
            await asyncio.sleep(pause)
        yield f'{{"n": {n}}}'.encode()


def _events(trigger: DeadLetterBurstTrigger, count: int, pause: float = 0.0) -> list[dict]:
    async def collect() -> list[dict]:
        return [e.payload async for e in trigger.filter_shared_stream(_feed(count, pause))]

    return asyncio.run(collect())


def _trigger(**kwargs: float) -> DeadLetterBurstTrigger:
    return DeadLetterBurstTrigger(topics=["smart-access.dlq"], kafka_config_id="c", **kwargs)


def test_one_event_per_burst_then_quiet_for_the_cooldown() -> None:
    assert _events(_trigger(threshold=100), 99) == []
    fired = _events(_trigger(threshold=100, cooldown_seconds=600), 450)
    assert len(fired) == 1 and fired[0]["dead_letters"] == 100
    # no cooldown: every further 100 within the window is a new burst
    assert len(_events(_trigger(threshold=100, cooldown_seconds=0), 450)) == 4


def test_a_slow_trickle_never_fires() -> None:
    # 30 messages 20 ms apart never have 10 inside a 0.1 s window
    assert _events(_trigger(threshold=10, window_seconds=0.1), 30, pause=0.02) == []


def test_it_serializes_to_an_importable_trigger_with_the_same_settings() -> None:
    trigger = _trigger(threshold=7, window_seconds=5, cooldown_seconds=9)
    path, kwargs = trigger.serialize()
    module, name = path.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert kwargs["threshold"] == 7 and kwargs["topics"] == ["smart-access.dlq"]
    # watchers of one topic share one consumer; the producer is the provider's
    assert again.shared_stream_key() == trigger.shared_stream_key()
    producer = DeadLetterBurstTrigger.create_shared_stream_producer(kwargs)
    assert type(producer).__name__ == "KafkaSharedStreamProducer"
    assert producer.topics == ["smart-access.dlq"] and producer.kafka_config_id == "c"
