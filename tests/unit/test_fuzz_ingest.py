"""Fuzz the consumer's per-record path and the pages' preview: no exception escapes.

Every input is bytes a producer can put on a topic: arbitrary bytes, JSON of any
shape, and mutations of the corpus in tests/fuzz_corpus.py. Bounded in `make test`
(FUZZ_EXAMPLES, default 1000 per test); `make fuzz` runs far more.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.kafka_ui.inspector import PREVIEW_CHARS, pretty
from streaming.consumer import DLQ_MAX_COPY_BYTES, absorb_record, dlq_copy
from streaming.contracts import ERROR_KINDS, Validator
from streaming.sink import Batch, DeadLetter, Record
from streaming.topics import DATA_TOPICS, DEVICES, EVENTS
from tests.fuzz_corpus import CORPUS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
VALIDATOR = Validator()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=6)
    ),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus payload with bytes flipped, cut, inserted or spliced from another."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            other = draw(st.sampled_from(CORPUS))
            data[at:] = other[draw(st.integers(0, max(len(other) - 1, 0))) :]
    return bytes(data)


payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(CORPUS),
    mutated(),
)
keys = st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=40).map(str.encode))


@FUZZ
@given(
    topic=st.sampled_from([*DATA_TOPICS, "smart-access.other"]),
    value=st.one_of(st.none(), payloads),
    key=keys,
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
)
def test_no_record_makes_the_consumer_raise(
    topic: str, value: bytes | None, key: bytes | None, timestamp_ms: int
) -> None:
    batch = Batch()
    raw = Record("t." + topic, 3, 17, timestamp_ms, key, value)
    absorb_record(batch, VALIDATOR.validate, raw, topic, NOW)
    assert batch.size == 1  # every record is accounted for: landed or dead-lettered
    assert batch.next_offsets == {("t." + topic, 3): 18}
    for letter in batch.dead:
        assert letter.kind in ERROR_KINDS and letter.detail
        assert "\x00" not in letter.detail
    lines = [line for table in batch.lines.values() for line in table]
    assert len(lines) + len(batch.dead) == 1
    for line in lines:  # what COPY gets is always encodable and one line
        line.encode("utf-8")
        assert line.endswith("\n") and line.count("\n") == 1


@FUZZ
@given(value=st.one_of(st.none(), payloads))
def test_preview_of_any_payload_is_bounded_and_never_raises(value: bytes | None) -> None:
    shown, _is_json = pretty(value)
    assert len(shown) <= PREVIEW_CHARS + 60
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in shown)


def test_preview_of_the_hostile_corpus() -> None:
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    shown, is_json = pretty(deep)
    assert not is_json and "bytes in all" in shown
    shown, is_json = pretty(b'{"pad": "' + b"x" * 900_000 + b'"}')
    assert not is_json and "900,011 bytes in all" in shown
    shown, _ = pretty(b"\xff\xfe\x00binary")
    assert shown.startswith("\\xff\\xfe\\u0000binary")
    shown, is_json = pretty(b'{"b": 1, "a": [1, 2]}')
    assert is_json and shown.splitlines()[1].strip() == '"a": ['


@FUZZ
@given(
    key=st.one_of(st.none(), st.binary(max_size=300_000)),
    size=st.integers(0, 1_200_000),
    detail=st.text(max_size=2000),
)
def test_dlq_copy_always_fits_the_topic(key: bytes | None, size: int, detail: str) -> None:
    value = b"v" * size
    letter = DeadLetter(Record("t", 0, 1, 0, key, value), "too_large", detail)
    copy_key, copy_value, headers = dlq_copy(letter)
    body = len(copy_key or b"") + len(copy_value or b"")
    assert body <= DLQ_MAX_COPY_BYTES
    header_bytes = sum(len(k) + len(v or b"") for k, v in headers)
    assert body + header_bytes < 1_000_000  # the producer's message.max.bytes
    truncated = dict(headers).get("payload_truncated")
    assert (truncated is not None) == (len(copy_value or b"") < size)
    if truncated is not None:
        assert truncated == str(size).encode() and value.startswith(copy_value or b"")


def test_registry_tombstones_are_removals_and_need_a_key() -> None:
    batch = Batch()
    absorb_record(
        batch,
        VALIDATOR.validate,
        Record("t", 0, 1, 1_764_000_000_000, b"dev-9", None),
        DEVICES,
        NOW,
    )
    absorb_record(
        batch, VALIDATOR.validate, Record("t", 0, 2, 1_764_000_000_000, None, None), DEVICES, NOW
    )
    absorb_record(batch, VALIDATOR.validate, Record("t", 0, 3, -1, b"dev-8", None), DEVICES, NOW)
    (first, third) = batch.lines["device_registry"]
    assert "\tdev-9\t" in first and "\tremoved\t2025-11-24T16:00:00+00:00\t" in first
    assert f"\tremoved\t{NOW.isoformat()}\t" in third  # no record timestamp: when it was read
    assert [d.kind for d in batch.dead] == ["invalid_key"]
    absorb_record(batch, VALIDATOR.validate, Record("t", 0, 4, 0, b"dev-1", None), EVENTS, NOW)
    assert batch.dead[-1].kind == "not_json"  # a null value elsewhere is no removal


@FUZZ
@given(
    topic=st.sampled_from(DATA_TOPICS),
    value=st.one_of(st.none(), payloads),
    key=keys,
)
def test_the_inspectors_verdict_is_what_the_sink_does(
    topic: str, value: bytes | None, key: bytes | None
) -> None:
    """The verdict the :8090 pages show equals the batch the consumer builds from the
    same record: the same raw table, or the same dead-letter kind and detail."""
    from streaming.consumer import verdict
    from streaming.sink import TABLES

    record = Record(topic, 0, 7, int(NOW.timestamp() * 1000), key, value)
    judged = verdict(VALIDATOR, record, topic, NOW)
    batch = Batch()
    absorb_record(batch, VALIDATOR.validate, record, topic, NOW)
    if batch.dead:
        assert (judged.kind, judged.detail) == (batch.dead[0].kind, batch.dead[0].detail)
        assert judged.kind in ERROR_KINDS and judged.table == "raw.dead_letters"
    else:
        assert judged.valid and batch.lines[TABLES[topic]]
        assert judged.table == f"raw.{TABLES[topic]}"


@FUZZ
@given(
    value=st.one_of(st.none(), payloads),
    key=keys,
    field=st.text(max_size=30),
    contains=st.text(max_size=5),
)
def test_message_filters_never_raise_on_any_record(
    value: bytes | None, key: bytes | None, field: str, contains: str
) -> None:
    """Any payload against any filter: a match or not, never an exception (a malformed
    field filter is refused once, before any record is read)."""
    from analytics.kafka_ui.inspector import Filters, _Matcher

    filters = Filters(key="dev-1", contains=contains, field=field)
    try:
        match = _Matcher(filters)
    except ValueError as exc:
        assert "field = value" in str(exc) and "\n" not in str(exc)
        return
    assert match(key, value) in (True, False)


def test_field_filter_on_the_hostile_corpus() -> None:
    from analytics.kafka_ui.inspector import Filters, _Matcher

    match = _Matcher(Filters(field="a = 1"))
    for payload in CORPUS:
        assert match(None, payload) in (True, False)
    assert match(None, b'{"a": 1}') and match(None, b'{"a": "1"}')
    assert not match(None, b'{"a": 2}') and not match(None, b'{"b": {"a": 1}}')
    assert not match(None, b'{"a":' * 50_000 + b"1" + b"}" * 50_000)  # too deep: not parsed
