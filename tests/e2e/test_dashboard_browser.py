"""Both Streamlit apps in a real browser: Debian's headless Chromium driven by
Playwright loads every page, waits for real content, checks key labels and
numbers, and saves a screenshot of each page to tests/artifacts/.

The apps run exactly as the stack's supervisor runs them (the commands come from
stack/services.py), on free ports, against the session's PostgreSQL (seeded marts)
and Kafka broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Producer, TopicPartition

from analytics import queries as q
from stack.config import REPO_ROOT
from stack.ephemeral import EphemeralKafka, EphemeralPostgres, free_port
from stack.services import streamlit_command
from streaming.topics import DLQ, EVENTS
from tests.apptest_support import commit_group_offsets
from tests.browser_support import ARTIFACTS, headless_chromium
from tests.browser_support import open_page as _open
from tests.browser_support import screenshot as _shoot
from tests.dashboard_seed import Seed, seeded_database

pytestmark = pytest.mark.e2e

GROUP = "smart-access-e2e-browser"
# What the DLQ can hold and a page must still render: a bounded, escaped preview.
HOSTILE = {
    "deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "huge": b'{"pad": "' + b"x" * 900_000 + b'"}',
    "binary": bytes(range(256)) * 8,
    "not-utf8": b'{"device_id": "\xff\xfe\xc3\x28"}',
    "markup": b'<script>alert("x")</script><img src=x onerror=alert(1)>',
}


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app on :{port} exited; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"app on :{port} not healthy after 90 s; see {log}")


@pytest.fixture(scope="module")
def apps(pg: EphemeralPostgres, kafka: EphemeralKafka) -> Iterator[dict[str, object]]:
    seed = seeded_database(pg)
    producer = Producer(kafka.client_config())
    for n in range(6):
        body = {"schema_version": 1, "device_id": "dev-e2e", "event_type": "open", "n": n}
        producer.produce(EVENTS, key="dev-e2e", value=json.dumps(body), partition=0)
    producer.produce(
        DLQ, key="dev-e2e", value=b"{not json", headers=[("error_kind", b"invalid_json")]
    )
    assert producer.flush(30) == 0
    big = Producer({**kafka.client_config(), "message.max.bytes": 1_000_000})
    for name, payload in HOSTILE.items():
        for topic in (DLQ, EVENTS):
            big.produce(
                topic,
                key=b"\xff" + name.encode(),
                value=payload,
                headers=[("error_kind", b"too_deep"), ("error_detail", payload[:300])],
            )
    assert big.flush(30) == 0
    with psycopg2.connect(pg.dsn(database=seed.database)) as conn, conn.cursor() as cur:
        for offset, payload in enumerate(HOSTILE.values()):
            cur.execute(
                "insert into raw.dead_letters (kafka_topic, kafka_partition, kafka_offset, "
                "kafka_key, payload, error_kind, error_detail) "
                "values ('e2e-hostile', 0, %s, %s, %s, 'too_deep', %s)",
                (offset, b"\xff", psycopg2.Binary(payload), payload[:200].hex()),
            )
    conn.close()
    commit_group_offsets(kafka.bootstrap, GROUP, [TopicPartition(EVENTS, 0, 1)])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(pg.env(user="smart_access_analyst"))
    env.update(
        PGDATABASE=seed.database,
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        PYTHONPATH=str(REPO_ROOT),
    )
    ports = {"dashboard": free_port(), "kafka-ui": free_port()}
    scripts = {"dashboard": "analytics/streamlit_app.py", "kafka-ui": "analytics/kafka_ui/app.py"}
    procs = []
    try:
        for name, port in ports.items():
            log = ARTIFACTS / f"{name}.log"
            proc = subprocess.Popen(
                streamlit_command(scripts[name], port),
                env=env,
                cwd=REPO_ROOT,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            _wait_healthy(port, proc, log)
        yield {"ports": ports, "seed": seed}
    finally:
        # the seeded database is shared with the integration tests: leave it as it was
        with psycopg2.connect(pg.dsn(database=seed.database)) as conn, conn.cursor() as cur:
            cur.execute("delete from raw.dead_letters where kafka_topic = 'e2e-hostile'")
        conn.close()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium() as chromium:
        yield chromium


def _metric(page: object, label: str) -> str:
    """The value of the metric with this label, once it is rendered."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first  # type: ignore[attr-defined]
    metric.wait_for(timeout=30_000)
    return str(metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()


def test_dashboard_pages_in_chromium(apps: dict[str, object], browser: object) -> None:
    port = apps["ports"]["dashboard"]  # type: ignore[index]
    seed: Seed = apps["seed"]  # type: ignore[assignment]
    active = [s for s in seed.status if s["device_status"] == "active"]

    page = _open(browser, port, "", "Open alerts")
    assert _metric(page, "Open alerts") == str(sum(a["is_open"] for a in seed.alerts))
    assert _metric(page, "Devices online") == str(sum(s["is_online"] for s in active))
    low = sum(s["battery_pct"] < q.LOW_BATTERY_PCT for s in active)
    assert _metric(page, "Low-battery devices") == str(low)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    assert "UTC" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "dashboard-overview")

    page = _open(browser, port, "activity", "By trigger source")
    assert int(_metric(page, "Events (last 24 hours)")) > 0
    page.locator('[data-testid="stVegaLiteChart"]').nth(1).wait_for(timeout=30_000)  # type: ignore[attr-defined]
    _shoot(page, "dashboard-activity")

    page = _open(browser, port, "devices", "Devices shown")
    assert _metric(page, "Devices shown") == str(len(seed.status))
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    assert "Offline devices" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "dashboard-devices")

    page = _open(browser, port, "device?device_id=dev-005", "Registry history")
    assert "Registry history (2 versions)" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "dashboard-device")

    page = _open(browser, port, "alerts", "Open alerts by type")
    assert _metric(page, "Open alerts") == str(sum(a["is_open"] for a in seed.alerts))
    _shoot(page, "dashboard-alerts")

    page = _open(browser, port, "pipeline", "Dead letters")
    assert _metric(page, "Dead letters") == str(len(seed.dead_letters) + len(HOSTILE))
    assert _metric(page, "Last run") == "success"
    _shoot(page, "dashboard-pipeline")


def _no_exception(page: object) -> None:
    """No Streamlit exception box (a traceback) anywhere on the page."""
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]  # fragments render late
    boxes = page.locator('[data-testid="stException"]')  # type: ignore[attr-defined]
    assert boxes.count() == 0, boxes.first.inner_text()
    assert "Traceback" not in page.inner_text("body")  # type: ignore[attr-defined]


def test_hostile_payloads_render_on_every_page(apps: dict[str, object], browser: object) -> None:
    """Deeply nested, huge, binary, invalid UTF-8 and markup payloads in the DLQ, on a
    data topic and in raw.dead_letters: every page renders them without a traceback."""
    ui = apps["ports"]["kafka-ui"]  # type: ignore[index]
    dashboard = apps["ports"]["dashboard"]  # type: ignore[index]
    visits = [
        (ui, "dead_letters", "Landed in PostgreSQL"),
        (ui, f"messages?topic={DLQ}", "Messages shown"),
        (ui, f"messages?topic={EVENTS}", "Messages shown"),
        (ui, f"messages?topic={EVENTS}&contains=pad&limit=50", "Messages shown"),
        (ui, f"?topic={DLQ}", "Records appended per minute"),
        (ui, "", "Topic details"),
        (ui, "groups", "Consumer groups"),
        (ui, "brokers", "KRaft controller quorum"),
        (dashboard, "pipeline", "Dead letters"),
    ]
    for port, path, ready in visits:
        page = _open(browser, port, path, ready)
        dialogs: list[str] = []
        page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        _no_exception(page)
        assert dialogs == []  # markup in a payload is shown as text, never run
        _shoot(page, f"hostile-{path.split('?')[0] or 'topics'}-{port}")


def test_kafka_inspector_pages_in_chromium(
    apps: dict[str, object], browser: object, kafka: EphemeralKafka
) -> None:
    from analytics.kafka_ui import inspector

    port = apps["ports"]["kafka-ui"]  # type: ignore[index]
    topics = inspector.topics(kafka.client_config())

    page = _open(browser, port, "", "Topic details")
    assert _metric(page, "Topics") == str(len(topics))
    assert _metric(page, "Messages") == str(sum(t.messages for t in topics))
    # nothing is produced meanwhile, so the count of the last 5 minutes can only fall
    later = sum(t.last_5_minutes or 0 for t in inspector.topics(kafka.client_config()))
    assert sum(t.last_5_minutes or 0 for t in topics) >= int(_metric(page, "Last 5 minutes"))
    assert int(_metric(page, "Last 5 minutes")) >= later
    _shoot(page, "kafka-topics")

    page = _open(browser, port, f"groups?group={GROUP}", f"{GROUP} — lag")
    group = {g.group_id: g for g in inspector.consumer_groups(kafka.client_config())}[GROUP]
    assert f"{GROUP} — lag {group.total_lag}" in page.inner_text("body")  # type: ignore[attr-defined]
    assert group.total_lag >= 5
    _shoot(page, "kafka-groups")

    page = _open(browser, port, f"messages?topic={EVENTS}", "Messages shown")
    assert int(_metric(page, "Messages shown")) > 0
    assert "key dev-e2e" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "kafka-messages")

    page = _open(browser, port, "dead_letters", "Landed in PostgreSQL")
    assert int(_metric(page, "Messages shown")) >= 1
    page.get_by_text("invalid_json").first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    assert "under today's contract" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "kafka-dead-letters")

    page = _open(browser, port, f"?topic={EVENTS}", "Records appended per minute")
    body = page.inner_text("body")  # type: ignore[attr-defined]
    assert "Configuration" in body and "Read-only" in body and "Size:" in body
    events = {t.name: t for t in topics}[EVENTS]
    assert _metric(page, "Topic partitions") == str(len(events.partitions))
    _shoot(page, "kafka-topic-detail")

    page = _open(browser, port, "brokers", "KRaft controller quorum")
    assert _metric(page, "Brokers") == "1"
    _shoot(page, "kafka-brokers")

    # A JSON-field filter in the URL: exactly the six records of device dev-e2e, each
    # with the sink's verdict (they lack required fields: dead letters).
    page = _open(
        browser, port, f"messages?topic={EVENTS}&field=device_id+%3D+dev-e2e", "Records scanned"
    )
    assert _metric(page, "Messages shown") == "6"
    page.locator('[data-testid="stExpander"] summary').first.click()  # type: ignore[attr-defined]
    verdict = page.get_by_text("Verdict: dead letter: missing_field").filter(visible=True)  # type: ignore[attr-defined]
    verdict.first.wait_for(timeout=30_000)
    assert "Landed: not landed" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "kafka-messages-filtered")

    page = _open(browser, port, f"groups?group={GROUP}", f"{GROUP} — lag")
    assert "Read-only" in page.inner_text("body")  # type: ignore[attr-defined]
    _shoot(page, "kafka-group")


def test_a_deep_link_opened_first_after_a_start_gets_the_apps_navigation(
    apps: dict[str, object], browser: object, kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    """Fresh app processes whose very first visitor opens a deep link: the page runs
    inside the app's navigation (titles, layout), not as a bare script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(pg.env(user="smart_access_analyst"))
    seed: Seed = apps["seed"]  # type: ignore[assignment]
    env.update(
        PGDATABASE=seed.database, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, PYTHONPATH=str(REPO_ROOT)
    )
    visits = {
        "analytics/kafka_ui/app.py": (
            f"messages?topic={EVENTS}",
            "Records scanned",
            "Consumer groups",
        ),
        "analytics/streamlit_app.py": (
            "device?device_id=dev-005",
            "Registry history",
            "Pipeline health",
        ),
    }
    for script, (path, ready, title) in visits.items():
        port = free_port()
        log = ARTIFACTS / f"first-visit-{Path(script).stem}.log"
        proc = subprocess.Popen(
            streamlit_command(script, port),
            env=env,
            cwd=REPO_ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(port, proc, log)
            page = _open(browser, port, path, ready)
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()  # type: ignore[attr-defined]
            assert title in nav and "views" not in nav and "pages" not in nav, nav
            page.close()  # type: ignore[attr-defined]
        finally:
            proc.terminate()
            proc.wait(timeout=20)
