"""The soak benchmark's figures and checks (benchmarks/soak.py), from given samples."""

from __future__ import annotations

import pytest

from benchmarks import soak

GREEN = {"dag_id": soak.PIPELINE_DAG, "run_id": "scheduled__1", "state": "success", "seconds": 50.0}


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert soak.percentile(samples, 0.50) == 50.0
    assert soak.percentile(samples, 0.99) == 99.0
    assert soak.percentile([3.0], 0.99) == 3.0


def test_a_quiet_soak_is_within_every_target() -> None:
    result = soak.summarize(
        [0.1] * 99 + [4.0],
        [GREEN],
        {"consumer": 100, "postgres": 200},
        {"consumer": 110, "postgres": 230},
    )
    assert result["lag_seconds"] == {"p50": 0.1, "p99": 0.1, "max": 4.0}
    assert result["memory_growth"] == {"consumer": 0.1, "postgres": 0.15}
    assert result["within_target"] is True


@pytest.mark.parametrize(
    ("lags", "runs", "end", "missed"),
    [
        ([6.0] * 10, [GREEN], {"consumer": 100}, "lag_p99_within_target"),
        ([], [GREEN], {"consumer": 100}, "lag_p99_within_target"),
        ([0.1], [], {"consumer": 100}, "pipeline_ran"),
        ([0.1], [GREEN, {**GREEN, "state": "failed"}], {"consumer": 100}, "every_run_green"),
        ([0.1], [{**GREEN, "seconds": 181.0}], {"consumer": 100}, "every_run_within_target"),
        (
            [0.1],
            [{**GREEN, "state": "running", "seconds": None}],
            {"consumer": 100},
            "every_run_within_target",
        ),
        ([0.1], [GREEN], {"consumer": 121}, "memory_growth_within_target"),
        ([0.1], [GREEN], {}, "services_measured"),
    ],
)
def test_each_target_can_be_missed(lags, runs, end, missed) -> None:
    result = soak.summarize(lags, runs, {"consumer": 100}, end)
    assert result[missed] is False
    assert result["within_target"] is False


def test_second_half_growth_tells_a_filling_cache_from_a_leak() -> None:
    series = [
        {"minute": 5.0, "pss": {"kafka": 600, "consumer": 100}},
        {"minute": 20.0, "pss": {"kafka": 700, "consumer": 120}},
        {"minute": 35.0, "pss": {"kafka": 740, "consumer": 140}},
        {"minute": 60.0, "pss": {"kafka": 750, "consumer": 170}},
    ]
    result = soak.summarize(
        [0.1], [GREEN], series[0]["pss"], {"kafka": 755, "consumer": 175}, series
    )
    # the target still reads warm-up to end: both grew past 20 %
    assert result["memory_growth"] == {"consumer": 0.75, "kafka": 0.258}
    assert result["memory_growth_within_target"] is False
    # from minute 35 (the first sample at or past the span's middle, 32.5) to the end
    assert result["memory_growth_second_half"] == {"consumer": 0.25, "kafka": 0.02}
    assert result["memory_pss_series"] == series


def test_without_samples_there_is_no_second_half() -> None:
    result = soak.summarize([0.1], [GREEN], {"consumer": 100}, {"consumer": 110})
    assert result["memory_growth_second_half"] == {}
    assert result["memory_pss_series"] == []


def test_a_run_in_flight_shows_its_state_alone() -> None:
    assert soak._run_text({**GREEN, "state": "running", "seconds": None}) == "running"
    assert soak._run_text(GREEN) == "success 50.0s"


@pytest.mark.parametrize(
    ("elapsed", "runs", "buffers", "expected"),
    [
        (200.0, [GREEN], 1.0, False),  # before the warm-up time
        (400.0, [], 1.0, False),  # no pipeline run finished yet
        (400.0, [GREEN, {**GREEN, "state": "running", "seconds": None}], 1.0, False),
        (400.0, [GREEN], 0.60, False),  # PostgreSQL's cache still filling
        (400.0, [GREEN], 0.96, True),
        (400.0, [GREEN], None, True),  # buffer use not known: not waited for
        (1800.0, [GREEN], 0.60, True),  # half the soak: measure what is left
    ],
)
def test_the_warm_up_waits_for_postgres_buffers_within_half_the_soak(
    elapsed, runs, buffers, expected
) -> None:
    assert soak.warmed_up(elapsed, 60, runs, buffers) is expected


def test_the_logs_of_slow_and_failed_runs_are_kept(tmp_path) -> None:
    logs = tmp_path / "airflow"
    runs = [
        GREEN,
        {**GREEN, "run_id": "scheduled__2", "seconds": 463.0},
        {**GREEN, "run_id": "scheduled__3", "state": "failed", "seconds": 20.0},
        {**GREEN, "run_id": "scheduled__4", "seconds": 500.0},  # its logs are gone
    ]
    for run in runs[:3]:
        task = logs / f"dag_id={run['dag_id']}" / f"run_id={run['run_id']}" / "task_id=build"
        task.mkdir(parents=True)
        (task / "attempt=1.log").write_text(f"log of {run['run_id']}\n")
    out = tmp_path / "kept"
    assert soak.keep_run_logs(logs, runs, out) == ["scheduled__2", "scheduled__3"]
    kept = out / soak.PIPELINE_DAG / "scheduled__2" / "task_id=build" / "attempt=1.log"
    assert kept.read_text() == "log of scheduled__2\n"
    assert not (out / soak.PIPELINE_DAG / "scheduled__1").exists()
