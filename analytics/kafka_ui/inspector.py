"""Read-only views of a Kafka cluster for the topic inspector.

Everything here only reads: metadata, configs, watermarks, committed offsets and
records fetched with `assign()` (no group join, no commit). The Streamlit pages call
these functions; they are plain Python so they can be used and tested without a UI.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    OffsetSpec,
    ResourceType,
)

from streaming.contracts import nesting_depth

__all__ = [
    "REASON_HEADERS",
    "Browse",
    "ConfigValue",
    "Filters",
    "GroupLag",
    "MemberInfo",
    "Message",
    "PartitionDetail",
    "PartitionLag",
    "PartitionOffsets",
    "TopicDetail",
    "TopicInfo",
    "browse",
    "consumer_groups",
    "dead_letter_reason",
    "latest_messages",
    "topic_detail",
    "topics",
]

logger = logging.getLogger(__name__)

# How long one request to the cluster may take: a page that waited longer would be no
# use, and a broker that is down or refuses the login is reported this soon.
TIMEOUT = 5.0
# Groups are described by their coordinators, many in one go: they get longer.
GROUP_TIMEOUT = 15.0

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
    last_5_minutes: int | None = None  # records appended in the last five minutes
    size_bytes: int | None = None  # on disk, the largest replica of each partition

    @property
    def compacted(self) -> bool:
        return "compact" in self.cleanup_policy

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
class MemberInfo:
    member_id: str
    client_id: str
    host: str
    instance_id: str | None  # group.instance.id of a static member
    assigned: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class GroupLag:
    group_id: str
    state: str
    members: int
    partitions: list[PartitionLag]
    member_list: list[MemberInfo] = field(default_factory=list)
    coordinator: int | None = None
    assignor: str = ""

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
    size: int = 0  # bytes of the value
    key_size: int = 0
    # What the sink does with it under today's contract ("" for a topic without one);
    # for a dead letter's DLQ copy, the verdict on the original record.
    verdict: str = ""
    valid: bool | None = None
    # (topic, partition, offset) whose landing in PostgreSQL tells where it went: the
    # record itself on a data topic, the original record for a DLQ copy.
    origin: tuple[str, int, int] | None = None


# One admin client per configuration, kept: a page view reuses its connections instead
# of connecting anew, and its error callback keeps the last errors for `refused`.
_CLIENTS: dict[tuple[tuple[str, str], ...], AdminClient] = {}
_ERRORS: deque[Any] = deque(maxlen=20)


_CLIENTS_LOCK = threading.Lock()  # page views run in threads of one server process


def _admin(config: dict[str, Any]) -> AdminClient:
    key = tuple(sorted((k, str(v)) for k, v in config.items()))
    with _CLIENTS_LOCK:
        admin = _CLIENTS.get(key)
        if admin is None:
            while len(_CLIENTS) >= 4:  # configurations of the past (a changed password)
                _CLIENTS.pop(next(iter(_CLIENTS)))
            settings: dict[str, Any] = {**config, "error_cb": _ERRORS.append}
            admin = _CLIENTS[key] = AdminClient(settings)
        return admin


def refused(config: dict[str, Any], credential_variable: str) -> str | None:
    """One line naming what to fix when the cluster refused this configuration's login
    or TLS handshake (see streaming.clients.refusal); None for any other failure."""
    from streaming.clients import refusal

    _admin(config).poll(0.5)  # serve the error callback
    for err in reversed(_ERRORS):
        line = refusal(err, credential_variable)
        if line is not None:
            return line
    return None


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


def _offsets_at(
    admin: AdminClient,
    partitions: list[TopicPartition],
    moments: list[datetime],
    ends: dict[tuple[str, int], int],
    timeout: float,
) -> list[dict[tuple[str, int], int]]:
    """For each moment, each partition's first offset at or after it (its end offset
    when nothing is that new): the requests for all moments are in flight together."""
    pending = [
        admin.list_offsets(
            {
                TopicPartition(tp.topic, tp.partition): OffsetSpec.for_timestamp(
                    int(moment.timestamp() * 1000)
                )
                for tp in partitions
            },
            request_timeout=timeout,
        )
        for moment in moments
    ]
    found = []
    for futures in pending:
        at: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            offset = future.result().offset
            key = (tp.topic, tp.partition)
            at[key] = offset if offset >= 0 else ends[key]
        found.append(at)
    return found


def _broker_settings(
    admin: AdminClient, broker_ids: list[int], timeout: float
) -> dict[int, dict[str, str]]:
    """Each broker's configuration, as the broker reports it (name -> value)."""
    resources = [ConfigResource(ResourceType.BROKER, str(b)) for b in broker_ids]
    found: dict[int, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        found[int(resource.name)] = {
            k: str(v.value) for k, v in future.result().items() if v.value is not None
        }
    return found


def _broker_log_dirs(admin: AdminClient, broker_ids: list[int], timeout: float) -> dict[int, str]:
    """Each broker's log.dirs (or log.dir) setting."""
    dirs = {}
    for broker, settings in _broker_settings(admin, broker_ids, timeout).items():
        setting = settings.get("log.dirs") or settings.get("log.dir")
        if setting:
            dirs[broker] = setting
    return dirs


def _segment_bytes(directory: Path) -> int:
    """Bytes of a partition's log segments (what Kafka reports as the partition's size)."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(".log") and entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def partition_sizes(
    admin: AdminClient, broker_ids: list[int], wanted: set[tuple[str, int]], timeout: float
) -> tuple[dict[tuple[str, int], dict[int, int]], str]:
    """Size on disk of each wanted partition's replica on each broker, and how it was
    read. librdkafka has no DescribeLogDirs, so the sizes come from the brokers' log
    directories when they are on this host (the embedded stack, the tests); for a
    remote broker the second value says why there are none."""
    try:
        dirs = _broker_log_dirs(admin, broker_ids, timeout)
    except KafkaException as exc:
        return {}, f"unknown: the brokers' log.dirs could not be read ({exc.args[0]})"
    sizes: dict[tuple[str, int], dict[int, int]] = {}
    remote = []
    for broker, setting in sorted(dirs.items()):
        local = [Path(d) for d in setting.split(",") if Path(d).is_dir()]
        if not local:
            remote.append(broker)
            continue
        for base in local:
            for topic, partition in wanted:
                directory = base / f"{topic}-{partition}"
                if directory.is_dir():
                    sizes.setdefault((topic, partition), {})[broker] = _segment_bytes(directory)
    if remote and not sizes:
        return {}, (
            f"unknown: the log directories of broker(s) {', '.join(map(str, remote))} are not "
            "on this host (the client library cannot ask a broker for them)"
        )
    how = "log segment bytes in the brokers' log.dirs on this host"
    if remote:
        how += f" (broker(s) {', '.join(map(str, remote))} are remote: not counted)"
    return sizes, how


def topics(
    config: dict[str, Any], include_internal: bool = False, timeout: float = TIMEOUT
) -> list[TopicInfo]:
    """Every topic with its partitions, start/end offsets, cleanup policy, retention,
    records of the last five minutes and size on disk (when the brokers are local)."""
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
    ends = {key: high for key, (_low, high) in marks.items()}
    (recent,) = _offsets_at(
        admin, partitions, [datetime.now(UTC) - timedelta(minutes=5)], ends, timeout
    )
    sizes, _how = partition_sizes(
        admin, sorted(metadata.brokers), {(tp.topic, tp.partition) for tp in partitions}, timeout
    )
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entries = future.result()
        configs[resource.name] = {k: str(v.value) for k, v in entries.items()}
    found = []
    for name in names:
        conf = configs.get(name, {})
        retention = conf.get("retention.ms")
        pids = sorted(metadata.topics[name].partitions)
        measured = [max(sizes[(name, p)].values()) for p in pids if (name, p) in sizes]
        found.append(
            TopicInfo(
                name=name,
                partitions=[PartitionOffsets(pid, *marks[(name, pid)]) for pid in pids],
                cleanup_policy=conf.get("cleanup.policy", "?"),
                retention_ms=int(retention) if retention and retention != "None" else None,
                configs=conf,
                last_5_minutes=sum(ends[(name, p)] - recent[(name, p)] for p in pids),
                size_bytes=sum(measured) if measured else None,
            )
        )
    return found


@dataclass(frozen=True)
class ConfigValue:
    name: str
    value: str | None
    source: str  # where the value comes from: topic, broker, default, ...
    is_default: bool  # the built-in default: nothing set it

    @property
    def set_on_topic(self) -> bool:
        return self.source == "topic"


_SOURCES = {
    "DYNAMIC_TOPIC_CONFIG": "topic",
    "DYNAMIC_BROKER_CONFIG": "broker (dynamic)",
    "DYNAMIC_DEFAULT_BROKER_CONFIG": "cluster default (dynamic)",
    "STATIC_BROKER_CONFIG": "broker (server.properties)",
    "DEFAULT_CONFIG": "default",
}


def _source(source: object) -> str:
    """Where a config value comes from; the client gives a ConfigSource or its number."""
    try:
        name = ConfigSource(getattr(source, "value", source)).name
    except ValueError:
        return "other"
    return _SOURCES.get(name, "other")


@dataclass(frozen=True)
class PartitionDetail:
    partition: int
    leader: int  # -1: offline
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start_offset: int
    end_offset: int
    size_bytes: int | None  # the leader's replica on disk; None when unknown

    @property
    def messages(self) -> int:
        return max(self.end_offset - self.start_offset, 0)

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True)
class TopicDetail:
    name: str
    configs: list[ConfigValue]
    partitions: list[PartitionDetail]
    per_minute: list[tuple[datetime, int]]  # records appended in each minute, oldest first
    size_note: str  # how sizes were read, or why they are unknown

    @property
    def compacted(self) -> bool:
        policy = next((c.value for c in self.configs if c.name == "cleanup.policy"), "")
        return "compact" in (policy or "")


def topic_detail(
    config: dict[str, Any], name: str, minutes: int = 15, timeout: float = TIMEOUT
) -> TopicDetail:
    """One topic: every config with where its value comes from, partitions with leader,
    replicas, ISR, offsets and size, and the records appended per minute for `minutes`
    (from the offsets of the records' timestamps: exact for CreateTime in order)."""
    admin = _admin(config)
    metadata = admin.list_topics(name, timeout=timeout)
    meta = metadata.topics.get(name)
    if meta is None or meta.error is not None:
        raise KafkaException(f"topic {name!r} does not exist")
    pids = sorted(meta.partitions)
    tps = [TopicPartition(name, p) for p in pids]
    marks = _watermarks(admin, tps, timeout)
    ends = {key: high for key, (_low, high) in marks.items()}
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    moments = [minute - timedelta(minutes=k) for k in range(minutes + 1)]
    at = _offsets_at(admin, tps, moments, ends, timeout)
    per_minute = [(minute, sum(ends[(name, p)] - at[0][(name, p)] for p in pids))]
    for k in range(1, minutes + 1):
        per_minute.append((moments[k], sum(at[k - 1][(name, p)] - at[k][(name, p)] for p in pids)))
    per_minute.reverse()
    sizes, how = partition_sizes(
        admin, sorted(metadata.brokers), {(name, p) for p in pids}, timeout
    )
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    configs = [
        ConfigValue(
            name=key,
            value=None if entry.is_sensitive else entry.value,
            source=_source(entry.source),
            is_default=bool(entry.is_default),
        )
        for key, entry in sorted(entries.items())
    ]
    partitions = []
    for p in pids:
        part = meta.partitions[p]
        on = sizes.get((name, p), {})
        partitions.append(
            PartitionDetail(
                partition=p,
                leader=part.leader,
                replicas=tuple(part.replicas),
                isr=tuple(part.isrs),
                start_offset=marks[(name, p)][0],
                end_offset=marks[(name, p)][1],
                size_bytes=on.get(part.leader, max(on.values()) if on else None),
            )
        )
    return TopicDetail(name, configs, partitions, per_minute, how)


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    address: str
    is_controller: bool
    leads: int  # partitions it leads
    replicas: int  # partition replicas it hosts
    out_of_sync: int  # of those, replicas not in the in-sync set
    log_dirs: str = ""
    roles: str = ""  # process.roles: broker, controller or both (KRaft)
    rack: str | None = None


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str | None
    controller_id: int | None
    brokers: list[BrokerInfo]
    partitions: int
    under_replicated: int
    offline: int  # partitions without a leader: neither readable nor writable
    quorum: str = ""  # the KRaft controller quorum the brokers are configured with


def cluster(config: dict[str, Any], timeout: float = TIMEOUT) -> ClusterInfo:
    """The brokers the cluster reports, the active controller and replica health."""
    admin = _admin(config)
    described = admin.describe_cluster(request_timeout=timeout).result()
    metadata = admin.list_topics(timeout=timeout)
    parts = [p for t in metadata.topics.values() for p in t.partitions.values()]
    controller = described.controller.id if described.controller is not None else None
    nodes = sorted(described.nodes, key=lambda n: n.id)
    try:
        settings = _broker_settings(admin, [n.id for n in nodes], timeout)
    except KafkaException:  # a principal without describe_configs on the cluster
        settings = {}
    brokers = [
        BrokerInfo(
            node_id=node.id,
            address=f"{node.host}:{node.port}",
            is_controller=node.id == controller,
            leads=sum(p.leader == node.id for p in parts),
            replicas=sum(node.id in p.replicas for p in parts),
            out_of_sync=sum(node.id in p.replicas and node.id not in p.isrs for p in parts),
            log_dirs=settings.get(node.id, {}).get("log.dirs", "")
            or settings.get(node.id, {}).get("log.dir", ""),
            roles=settings.get(node.id, {}).get("process.roles", ""),
            rack=node.rack,
        )
        for node in nodes
    ]
    quorum = next(
        (
            s.get("controller.quorum.voters") or s.get("controller.quorum.bootstrap.servers", "")
            for s in settings.values()
        ),
        "",
    )
    return ClusterInfo(
        quorum=quorum,
        cluster_id=described.cluster_id,
        controller_id=controller,
        brokers=brokers,
        partitions=len(parts),
        under_replicated=sum(len(p.isrs) < len(p.replicas) for p in parts),
        offline=sum(p.leader < 0 for p in parts),
    )


def consumer_groups(config: dict[str, Any], timeout: float = GROUP_TIMEOUT) -> list[GroupLag]:
    """Every consumer group with its members, committed offsets and lag per partition.
    The requests for all groups are in flight together; a group the cluster does not
    describe in time is listed with state `unknown` instead of failing the others."""
    admin = _admin(config)
    listing = admin.list_consumer_groups(request_timeout=timeout).result()
    group_ids = sorted(g.group_id for g in listing.valid)
    if not group_ids:
        return []
    described = admin.describe_consumer_groups(group_ids, request_timeout=timeout)
    # One group per request (the client takes a single group per call), all at once.
    offsets = {
        gid: next(
            iter(
                admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(gid)], request_timeout=timeout
                ).values()
            )
        )
        for gid in group_ids
    }
    descriptions: dict[str, Any] = {}
    for gid, future in described.items():
        try:
            descriptions[gid] = future.result()
        except KafkaException as exc:
            logger.warning("group %s was not described: %s", gid, exc)
    committed: dict[str, list[TopicPartition]] = {}
    for gid, future in offsets.items():
        try:
            committed[gid] = future.result().topic_partitions or []
        except KafkaException as exc:
            logger.warning("offsets of group %s were not read: %s", gid, exc)
            committed[gid] = []
    if not descriptions:
        raise KafkaException(f"none of the {len(group_ids)} consumer groups was described")
    all_tps = [tp for tps in committed.values() for tp in tps]
    marks = _watermarks(admin, [TopicPartition(tp.topic, tp.partition) for tp in all_tps], timeout)
    groups = []
    for gid in group_ids:
        desc = descriptions.get(gid)
        rows = [
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed_offset=tp.offset if tp.offset >= 0 else None,
                end_offset=marks[(tp.topic, tp.partition)][1],
            )
            for tp in sorted(committed[gid], key=lambda t: (t.topic, t.partition))
        ]
        members = [
            MemberInfo(
                member_id=m.member_id,
                client_id=m.client_id,
                host=m.host,
                instance_id=m.group_instance_id,
                assigned=tuple(
                    sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
                ),
            )
            for m in sorted(desc.members if desc else [], key=lambda m: (m.client_id, m.member_id))
        ]
        if desc is None:  # not described in time: its offsets and lag still count
            groups.append(GroupLag(gid, "unknown (not described in time)", 0, rows))
            continue
        groups.append(
            GroupLag(
                group_id=gid,
                state=str(desc.state).rsplit(".", 1)[-1],
                members=len(desc.members),
                partitions=rows,
                member_list=members,
                coordinator=desc.coordinator.id if desc.coordinator is not None else None,
                assignor=desc.partition_assignor or "",
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


MODES = ("newest", "offset", "timestamp")
DEFAULT_SCAN = 30_000  # records one filtered request reads at most, across partitions
MAX_SCAN = 1_000_000


@dataclass(frozen=True)
class Filters:
    """What a record must match: its key exactly, a substring of its key or value,
    and a JSON field's value (`device_id = dev-00042`, dotted paths and list indexes:
    `payload.items.0 = x`). Empty parts match everything."""

    key: str = ""
    contains: str = ""
    field: str = ""

    @property
    def any(self) -> bool:
        return bool(self.key or self.contains or self.field)

    def json_field(self) -> tuple[list[str], str] | None:
        """The field filter as (path, expected text); ValueError with a one-line
        reason when it is not `path = value`."""
        if not self.field.strip():
            return None
        path, sep, expected = self.field.partition("=")
        if not sep or not path.strip():
            raise ValueError(
                f"the JSON field filter {self.field!r} is not `field = value` "
                "(for example `device_id = dev-00042`)"
            )
        expected = expected.strip()
        if len(expected) >= 2 and expected[0] == expected[-1] and expected[0] in "'\"":
            expected = expected[1:-1]
        return [part.strip() for part in path.strip().split(".")], expected


def _leaf(document: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(document) <= index < len(document):
                return False, None
            document = document[index]
        else:
            return False, None
    return True, document


def _field_matches(value: bytes | None, path: list[str], expected: str) -> bool:
    if value is None or len(value) > _PARSE_LIMIT or b"{" not in value[:64]:
        return False
    if nesting_depth(value, stop=_MAX_DEPTH) > _MAX_DEPTH:
        return False
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return False
    found, leaf = _leaf(document, path)
    if not found:
        return False
    if isinstance(leaf, str):
        return leaf == expected
    return json.dumps(leaf) == expected or str(leaf) == expected


class _Matcher:
    def __init__(self, filters: Filters) -> None:
        self.key = filters.key.encode("utf-8") if filters.key else None
        self.contains = filters.contains.encode("utf-8") if filters.contains else None
        self.field = filters.json_field()

    def __call__(self, key: bytes | None, value: bytes | None) -> bool:
        if self.key is not None and key != self.key:
            return False
        if self.contains is not None and not (
            (value is not None and self.contains in value)
            or (key is not None and self.contains in key)
        ):
            return False
        return self.field is None or _field_matches(value, *self.field)


@dataclass(frozen=True)
class Browse:
    """One read of a topic: the matching records and what was read to find them."""

    messages: list[Message]
    scanned: int  # records read
    ranges: dict[int, tuple[int, int]]  # partition -> (first offset read, next offset)
    complete: bool  # False when the time budget ended the read first


_VALIDATOR: Any = None


def _split_prefix(topic: str) -> tuple[str, str | None]:
    """(prefix, contract name) of a data or DLQ topic named <prefix><contract name>."""
    from streaming.topics import DATA_TOPICS, DLQ

    for name in (*DATA_TOPICS, DLQ):
        if topic.endswith(name):
            return topic[: -len(name)], name
    return "", None


def _verdict(
    topic: str,
    partition: int,
    offset: int,
    ts: int,
    key: bytes | None,
    value: bytes | None,
    headers: dict[str, bytes | None],
) -> tuple[str, bool | None, tuple[str, int, int] | None]:
    """The sink's verdict on a record of a data topic, or on the original record of a
    DLQ copy (from its source_* headers), with the coordinates to look up. Topics may
    carry an environment's prefix (`staging.smart-access.events`)."""
    from streaming.consumer import verdict
    from streaming.contracts import Validator
    from streaming.sink import Record
    from streaming.topics import DLQ

    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = Validator()
    prefix, contract = _split_prefix(topic)
    if contract == DLQ:
        source = headers.get("source_topic")
        topic = source.decode("utf-8", "replace") if source else ""
        source_prefix, contract = _split_prefix(topic)
        if contract in (None, DLQ) or source_prefix != prefix:
            return "no source_topic header naming a data topic", None, None
        try:
            partition = int(headers.get("source_partition") or b"")
            offset = int(headers.get("source_offset") or b"")
            ts = int(headers.get("source_timestamp_ms") or b"-1")
        except ValueError:
            return "its source_* headers are not numbers", None, None
        if headers.get("payload_truncated") is not None:
            return (
                "not judged: this copy is truncated; raw.dead_letters has the whole "
                "payload (`python -m streaming.redrive --dry-run` judges it)",
                None,
                (topic, partition, offset),
            )
    if contract is None:
        return "", None, None
    judged = verdict(_VALIDATOR, Record(topic, partition, offset, ts, key, value), contract)
    return str(judged), judged.valid, (topic, partition, offset)


def browse(
    config: dict[str, Any],
    topic: str,
    partition: int | None = None,
    *,
    mode: str = "newest",
    offset: int = 0,
    since: datetime | None = None,
    limit: int = 20,
    filters: Filters | None = None,
    scan: int = DEFAULT_SCAN,
    timeout: float = TIMEOUT,
    budget: float = 5.0,
) -> Browse:
    """Read records of `topic` (one partition or all) without joining a group:

    - `newest`: the newest `limit` per partition (newest first); with filters, the
      matches among the newest `scan` records (split over the partitions);
    - `offset`: from `offset` on (oldest first), `limit` matches per partition;
    - `timestamp`: from the first record at or after `since` (oldest first).

    A read stops after `scan` records or `budget` seconds, whichever comes first, and
    says what it read, so a filter over a topic of ten million records stays bounded.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    filters = filters or Filters()
    match = _Matcher(filters)  # ValueError for a malformed field filter, before any read
    admin = _admin(config)
    metadata = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaException(f"topic {topic!r} does not exist")
    if partition is not None and partition not in metadata.partitions:
        raise ValueError(
            f"{topic} has no partition {partition} (it has 0..{len(metadata.partitions) - 1})"
        )
    pids = sorted(metadata.partitions) if partition is None else [partition]
    marks = _watermarks(admin, [TopicPartition(topic, p) for p in pids], timeout)
    scan = max(1, min(scan, MAX_SCAN))
    per_partition = max(scan // len(pids), 1)
    starts: dict[int, int] = {}
    if mode == "newest":
        window = per_partition if filters.any else limit
        starts = {p: max(marks[(topic, p)][0], marks[(topic, p)][1] - window) for p in pids}
    elif mode == "offset":
        starts = {p: max(marks[(topic, p)][0], offset) for p in pids}
    else:
        moment = since or datetime.now(UTC)
        ends = {(topic, p): marks[(topic, p)][1] for p in pids}
        (at,) = _offsets_at(
            admin, [TopicPartition(topic, p) for p in pids], [moment], ends, timeout
        )
        starts = {p: at[(topic, p)] for p in pids}
    stops = {p: min(marks[(topic, p)][1], starts[p] + per_partition) for p in pids}
    if mode == "newest":
        stops = {p: marks[(topic, p)][1] for p in pids}
    pending = {p: stops[p] for p in pids if stops[p] > starts[p]}
    ranges = {p: (starts[p], starts[p]) for p in pids}
    if not pending:
        return Browse([], 0, ranges, True)
    consumer = Consumer(
        {
            **config,
            # A private, never-committed group id: browsing joins no group and moves no offset.
            "group.id": f"smart-access-inspector-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 8 * 1024 * 1024,
            # the end of a partition ends its read even when its last offsets hold no
            # record (removed by compaction, or transaction markers)
            "enable.partition.eof": True,
        }
    )
    kept: dict[int, list[Any]] = {p: [] for p in pending}
    scanned = 0
    complete = True
    try:
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in pending])
        deadline = datetime.now(UTC).timestamp() + budget
        while pending:
            if datetime.now(UTC).timestamp() >= deadline:
                complete = False
                break
            for record in consumer.consume(num_messages=2000, timeout=0.2):
                err = record.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.pop(record.partition() or 0, None)
                    else:
                        logger.warning("fetch error on %s: %s", topic, err)
                    continue
                pid, at_offset = record.partition() or 0, record.offset() or 0
                if pid not in pending or at_offset >= pending[pid]:
                    continue
                scanned += 1
                ranges[pid] = (ranges[pid][0], at_offset + 1)
                key, value = _as_bytes(record.key()), _as_bytes(record.value())
                if match(key, value):
                    found = kept[pid]
                    found.append(record)
                    if mode == "newest" and len(found) > limit:
                        del found[0]
                    if mode != "newest" and len(found) >= limit:
                        pending.pop(pid, None)
                        continue
                if at_offset + 1 >= pending.get(pid, 0):
                    pending.pop(pid, None)
    finally:
        consumer.close()
    records = [r for found in kept.values() for r in found]
    messages = [_message(topic, r) for r in records]
    order = lambda m: (m.timestamp or datetime.min.replace(tzinfo=UTC), m.partition, m.offset)  # noqa: E731
    messages.sort(key=order, reverse=mode == "newest")
    if mode != "newest":
        messages = messages[:limit]
    return Browse(messages, scanned, ranges, complete)


def _message(topic: str, record: Any) -> Message:
    pid, offset = record.partition() or 0, record.offset() or 0
    kind, ts = record.timestamp()
    key, raw = _as_bytes(record.key()), _as_bytes(record.value())
    value, is_json = pretty(raw)
    raw_headers = {str(h[0]): _as_bytes(h[1]) for h in record.headers() or []}
    said, valid, origin = _verdict(topic, pid, offset, ts if kind else -1, key, raw, raw_headers)
    return Message(
        topic=topic,
        partition=pid,
        offset=offset,
        timestamp=datetime.fromtimestamp(ts / 1000, UTC) if kind and ts > 0 else None,
        key=_decode(key, 200),
        headers={
            _decode(name.encode(), 200) or "": _decode(v, 1000) or ""
            for name, v in raw_headers.items()
        },
        value=value,
        is_json=is_json,
        size=len(raw) if raw is not None else 0,
        key_size=len(key) if key is not None else 0,
        verdict=said,
        valid=valid,
        origin=origin,
    )


def latest_messages(
    config: dict[str, Any],
    topic: str,
    partition: int | None = None,
    limit: int = 20,
    timeout: float = TIMEOUT,
) -> list[Message]:
    """The last `limit` records of each chosen partition, newest first."""
    return browse(config, topic, partition, limit=limit, timeout=timeout).messages


def dead_letter_reason(headers: dict[str, str]) -> tuple[str, str]:
    """(reason, detail) of a DLQ record from its headers; '?' when none is present."""
    lowered = {k.lower(): v for k, v in headers.items()}
    reason = next((lowered[h] for h in REASON_HEADERS if h in lowered), "?")
    detail = next((lowered[h] for h in DETAIL_HEADERS if h in lowered), "")
    return reason, detail
