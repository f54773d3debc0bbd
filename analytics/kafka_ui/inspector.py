"""Read-only views of a Kafka cluster for the topic inspector.

Everything here only reads: metadata, configs, watermarks, committed offsets and
records fetched with `assign()` (no group join, no commit). The Streamlit pages call
these functions; they are plain Python so they can be used and tested without a UI.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType

from streaming.contracts import nesting_depth

__all__ = [
    "REASON_HEADERS",
    "GroupLag",
    "Message",
    "PartitionLag",
    "PartitionOffsets",
    "TopicInfo",
    "consumer_groups",
    "dead_letter_reason",
    "latest_messages",
    "topics",
]

logger = logging.getLogger(__name__)

# DLQ records carry the reason they were rejected in a header; the first of these
# names that is present is shown as the reason (all headers are shown as well).
REASON_HEADERS = ("error_kind", "error.kind", "dlq.error.kind", "reason", "x-error-kind")
DETAIL_HEADERS = ("error_detail", "error.detail", "dlq.error.detail", "detail")


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    start_offset: int
    end_offset: int

    @property
    def messages(self) -> int:
        """Records between the start and end offsets (an upper bound for compacted topics)."""
        return max(self.end_offset - self.start_offset, 0)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: list[PartitionOffsets]
    cleanup_policy: str
    retention_ms: int | None
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def end_offsets(self) -> int:
        return sum(p.end_offset for p in self.partitions)

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int | None
    end_offset: int

    @property
    def lag(self) -> int:
        """Records not yet consumed; without a commit, the whole partition counts."""
        return max(self.end_offset - (self.committed_offset or 0), 0)


@dataclass(frozen=True)
class GroupLag:
    group_id: str
    state: str
    members: int
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    headers: dict[str, str]
    value: str
    is_json: bool


def _admin(config: dict[str, Any]) -> AdminClient:
    return AdminClient(config)


PREVIEW_CHARS = 4000  # what a page shows of one value at most
_PARSE_LIMIT = 256 * 1024  # larger values are shown as text, never parsed
_MAX_DEPTH = 64  # deeper JSON is shown as text: pretty-printing it would recurse
# control characters other than newline and tab, shown as \uXXXX
_CONTROL = {c: f"\\u{c:04x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)}


def _bounded(text: str, size: int, limit: int = PREVIEW_CHARS) -> str:
    text = text.translate(_CONTROL)
    if len(text) > limit:
        return f"{text[:limit]}… ({size:,} bytes in all, the rest not shown)"
    return text


def _decode(raw: bytes | None, limit: int = PREVIEW_CHARS) -> str | None:
    """Bytes as bounded text: UTF-8 where it is, invalid bytes as \\xNN escapes."""
    if raw is None:
        return None
    head = raw[: limit * 4]
    return _bounded(head.decode("utf-8", "backslashreplace"), len(raw), limit)


def _as_bytes(raw: object) -> bytes | None:
    if raw is None or isinstance(raw, bytes):
        return raw
    return str(raw).encode("utf-8")


def _watermarks(
    admin: AdminClient, partitions: list[TopicPartition], timeout: float
) -> dict[tuple[str, int], tuple[int, int]]:
    if not partitions:
        return {}
    result: dict[tuple[str, int], list[int]] = {}
    for spec, index in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 1)):
        futures = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
            request_timeout=timeout,
        )
        for tp, future in futures.items():
            result.setdefault((tp.topic, tp.partition), [0, 0])[index] = future.result().offset
    return {k: (v[0], v[1]) for k, v in result.items()}


def topics(
    config: dict[str, Any], include_internal: bool = False, timeout: float = 10.0
) -> list[TopicInfo]:
    """Every topic with its partitions, start/end offsets, cleanup policy and retention."""
    admin = _admin(config)
    metadata = admin.list_topics(timeout=timeout)
    names = sorted(
        name for name in metadata.topics if include_internal or not name.startswith("__")
    )
    if not names:
        return []
    partitions = [
        TopicPartition(name, pid) for name in names for pid in metadata.topics[name].partitions
    ]
    marks = _watermarks(admin, partitions, timeout)
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entries = future.result()
        configs[resource.name] = {k: str(v.value) for k, v in entries.items()}
    found = []
    for name in names:
        conf = configs.get(name, {})
        retention = conf.get("retention.ms")
        found.append(
            TopicInfo(
                name=name,
                partitions=[
                    PartitionOffsets(pid, *marks[(name, pid)])
                    for pid in sorted(metadata.topics[name].partitions)
                ],
                cleanup_policy=conf.get("cleanup.policy", "?"),
                retention_ms=int(retention) if retention and retention != "None" else None,
                configs=conf,
            )
        )
    return found


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    address: str
    is_controller: bool
    leads: int  # partitions it leads
    replicas: int  # partition replicas it hosts
    out_of_sync: int  # of those, replicas not in the in-sync set


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str | None
    controller_id: int | None
    brokers: list[BrokerInfo]
    partitions: int
    under_replicated: int
    offline: int  # partitions without a leader: neither readable nor writable


def cluster(config: dict[str, Any], timeout: float = 10.0) -> ClusterInfo:
    """The brokers the cluster reports, the active controller and replica health."""
    admin = _admin(config)
    described = admin.describe_cluster(request_timeout=timeout).result()
    metadata = admin.list_topics(timeout=timeout)
    parts = [p for t in metadata.topics.values() for p in t.partitions.values()]
    controller = described.controller.id if described.controller is not None else None
    brokers = [
        BrokerInfo(
            node_id=node.id,
            address=f"{node.host}:{node.port}",
            is_controller=node.id == controller,
            leads=sum(p.leader == node.id for p in parts),
            replicas=sum(node.id in p.replicas for p in parts),
            out_of_sync=sum(node.id in p.replicas and node.id not in p.isrs for p in parts),
        )
        for node in sorted(described.nodes, key=lambda n: n.id)
    ]
    return ClusterInfo(
        cluster_id=described.cluster_id,
        controller_id=controller,
        brokers=brokers,
        partitions=len(parts),
        under_replicated=sum(len(p.isrs) < len(p.replicas) for p in parts),
        offline=sum(p.leader < 0 for p in parts),
    )


def consumer_groups(config: dict[str, Any], timeout: float = 10.0) -> list[GroupLag]:
    """Every consumer group with its committed offsets and lag per partition."""
    admin = _admin(config)
    listing = admin.list_consumer_groups(request_timeout=timeout).result()
    group_ids = sorted(g.group_id for g in listing.valid)
    if not group_ids:
        return []
    descriptions = {
        gid: future.result()
        for gid, future in admin.describe_consumer_groups(
            group_ids, request_timeout=timeout
        ).items()
    }
    committed: dict[str, list[TopicPartition]] = {}
    for gid in group_ids:
        # One group per request: the client accepts a single group per call.
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(gid)], request_timeout=timeout
        )
        committed[gid] = next(iter(futures.values())).result().topic_partitions or []
    all_tps = [tp for tps in committed.values() for tp in tps]
    marks = _watermarks(admin, [TopicPartition(tp.topic, tp.partition) for tp in all_tps], timeout)
    groups = []
    for gid in group_ids:
        desc = descriptions[gid]
        rows = [
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed_offset=tp.offset if tp.offset >= 0 else None,
                end_offset=marks[(tp.topic, tp.partition)][1],
            )
            for tp in sorted(committed[gid], key=lambda t: (t.topic, t.partition))
        ]
        groups.append(
            GroupLag(
                group_id=gid,
                state=str(desc.state).rsplit(".", 1)[-1],
                members=len(desc.members),
                partitions=rows,
            )
        )
    return groups


def pretty(value: bytes | None) -> tuple[str, bool]:
    """A bounded, escaped preview of a record value: indented JSON when it is JSON of a
    sane size and depth, else its text (invalid UTF-8 bytes as escapes). Never raises,
    whatever the bytes: deeply nested, huge, binary."""
    if value is None:
        return "null", False
    if len(value) <= _PARSE_LIMIT:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and nesting_depth(value, stop=_MAX_DEPTH) <= _MAX_DEPTH:
            try:
                shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
            except (ValueError, RecursionError):
                pass
            else:
                return _bounded(shown, len(value)), True
    return _decode(value) or "", False


def latest_messages(
    config: dict[str, Any],
    topic: str,
    partition: int | None = None,
    limit: int = 20,
    timeout: float = 10.0,
) -> list[Message]:
    """The last `limit` records of each chosen partition, newest first."""
    admin = _admin(config)
    metadata = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaException(f"topic {topic!r} does not exist")
    pids = sorted(metadata.partitions) if partition is None else [partition]
    marks = _watermarks(admin, [TopicPartition(topic, p) for p in pids], timeout)
    assignment = []
    remaining: dict[int, int] = {}
    for pid in pids:
        low, high = marks[(topic, pid)]
        if high > low:
            assignment.append(TopicPartition(topic, pid, max(low, high - limit)))
            remaining[pid] = high
    if not assignment:
        return []
    consumer = Consumer(
        {
            **config,
            # A private, never-committed group id: browsing joins no group and moves no offset.
            "group.id": f"smart-access-inspector-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    found: list[Message] = []
    try:
        consumer.assign(assignment)
        deadline = datetime.now(UTC).timestamp() + timeout
        while remaining and datetime.now(UTC).timestamp() < deadline:
            record = consumer.poll(0.5)
            if record is None:
                continue
            if record.error() is not None:
                logger.warning("fetch error on %s: %s", topic, record.error())
                continue
            pid, offset = record.partition() or 0, record.offset() or 0
            kind, ts = record.timestamp()
            value, is_json = pretty(_as_bytes(record.value()))
            found.append(
                Message(
                    topic=topic,
                    partition=pid,
                    offset=offset,
                    timestamp=datetime.fromtimestamp(ts / 1000, UTC) if kind and ts > 0 else None,
                    key=_decode(_as_bytes(record.key()), 200),
                    headers={
                        _decode(str(h[0]).encode(), 200) or "": _decode(_as_bytes(h[1]), 1000) or ""
                        for h in record.headers() or []
                    },
                    value=value,
                    is_json=is_json,
                )
            )
            if offset + 1 >= remaining.get(pid, 0):
                remaining.pop(pid, None)
    finally:
        consumer.close()
    found.sort(key=lambda m: (m.timestamp or datetime.min.replace(tzinfo=UTC), m.offset))
    found.reverse()
    return found


def dead_letter_reason(headers: dict[str, str]) -> tuple[str, str]:
    """(reason, detail) of a DLQ record from its headers; '?' when none is present."""
    lowered = {k.lower(): v for k, v in headers.items()}
    reason = next((lowered[h] for h in REASON_HEADERS if h in lowered), "?")
    detail = next((lowered[h] for h in DETAIL_HEADERS if h in lowered), "")
    return reason, detail
