"""The build window's data watermark and dbt vars (no services)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

from smart_access.watermarks import BuildWindow  # noqa: E402

NOW = datetime(2026, 4, 6, 12, 0, tzinfo=UTC)


def _window(marks: dict[tuple[str, str, int], datetime]) -> BuildWindow:
    return BuildWindow(
        transformed_at=NOW,
        previous_transformed_at=None,
        safe_before=NOW,
        snapshot_xmin=1,
        oldest_writer_pid=None,
        ingested_after={"access_events": None},
        ingested_through={"access_events": NOW - timedelta(seconds=1)},
        newest_record_at=marks,
    )


def test_the_data_watermark_is_the_oldest_partition_that_is_not_idle() -> None:
    window = _window(
        {
            ("access_events", "smart-access.events", 0): NOW - timedelta(minutes=20),
            ("access_events", "smart-access.events", 1): NOW - timedelta(minutes=21),
            ("device_health", "smart-access.health", 0): NOW - timedelta(minutes=19),
            # silent for hours (its only device is off): idle, not lagging
            ("device_health", "smart-access.health", 1): NOW - timedelta(hours=5),
            # registry changes are rare: never part of the watermark
            ("device_registry", "smart-access.devices", 0): NOW - timedelta(days=3),
        }
    )
    assert window.data_watermark_at == NOW - timedelta(minutes=21)


def test_no_record_yet_leaves_the_reference_to_dbt() -> None:
    window = _window({("device_registry", "smart-access.devices", 0): NOW})
    assert window.data_watermark_at is None
    values = window.dbt_vars()
    assert "data_watermark_at" not in values
    assert values["ingested_after"] == {"access_events": "-infinity"}
    assert values["previous_transformed_at"] == "-infinity"
