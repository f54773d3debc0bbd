"""Benchmark: a soak of the whole embedded platform, run as a user runs it.

`make up` in a temporary folder on free ports with the simulator at SOAK_RATE events
per second, the pipeline DAG enabled in Airflow and left to its 15-minute schedule,
and the dashboard open in a headless browser (reloaded every minute), for
SOAK_MINUTES (default 60: four DAG cycles). Every SAMPLE_SECONDS it samples the
consumer's lag: for each partition of the data topics, the age of the oldest record
not yet landed (the record at the position stored in ops.consumer_offsets; 0 when the
partition is drained), and the largest over the partitions is the sample. At the
end it reports lag p50/p99/max, every DAG run's state and duration, and each
service's resident memory (its whole process tree) after a warm-up and at the end,
both taken while no DAG run is in flight; the warm-up lasts until PostgreSQL's shared
buffers are full (or half the soak). The task logs of a run that failed or missed
its target are kept in benchmarks/results/soak-logs/.

    SOAK_RATE=2000 SOAK_MINUTES=60 make bench-soak

Targets (issue 15): lag p99 <= 5 s; every DAG run green and <= 3 minutes; no
service's memory (PSS, see service_memory) growing by more than 20 %. Writes
benchmarks/results/soak.json; exit 1 when a target is missed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from stack.cli import process_info  # noqa: E402
from stack.config import StackConfig  # noqa: E402
from stack.ephemeral import free_stack_ports, make_tempdir  # noqa: E402
from streaming.topics import CONSUMER_GROUP, DATA_TOPICS  # noqa: E402

logger = logging.getLogger("benchmarks.soak")
PIPELINE_DAG = "smart_access_streaming_pipeline"
SAMPLE_SECONDS = 5
WARMUP_SECONDS = 300  # services settle (imports, caches, a first DAG run) before memory
# ... and PostgreSQL's shared buffers have filled (pg_buffercache): until they have,
# its PSS grows by every page read for the first time, a cache filling, not a leak.
# A soak that never fills them (a low rate) measures from half its length on.
BUFFERS_FILLED = 0.95
RELOAD_SECONDS = 60
TARGET_LAG_P99_SECONDS = 5.0
TARGET_RUN_SECONDS = 180.0
TARGET_RSS_GROWTH = 0.20
CHECKS = (
    "lag_p99_within_target",
    "pipeline_ran",
    "every_run_green",
    "every_run_within_target",
    "services_measured",
    "memory_growth_within_target",
)


def _setting(name: str, default: float, kind: type = float) -> float:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = kind(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number; e.g. {name}={default}") from None
    if value <= 0:
        raise SystemExit(f"{name}={raw!r} must be above 0; e.g. {name}={default}")
    return value


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _growth(start: dict[str, int], end: dict[str, int]) -> dict[str, float]:
    return {
        name: round(end[name] / start[name] - 1, 3)
        for name in sorted(start)
        if name in end and start[name] > 0
    }


def summarize(
    lags: list[float],
    runs: list[dict[str, Any]],
    memory_start: dict[str, int],
    memory_end: dict[str, int],
    series: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The soak's figures and its checks against the targets (memory: PSS bytes per
    service, after the warm-up and at the end). `series` holds the PSS samples taken
    between DAG runs from the warm-up on ({"minute": m, "pss": {service: bytes}}); the
    growth from the first one in the second half of that span to the end is reported
    beside the target's (warm-up to end), to tell a cache still filling from a leak."""
    growth = _growth(memory_start, memory_end)
    second_half: dict[str, float] = {}
    if series:
        middle = (series[0]["minute"] + series[-1]["minute"]) / 2
        later = [sample for sample in series if sample["minute"] >= middle]
        if later:
            second_half = _growth(later[0]["pss"], memory_end)
    lag = (
        {
            "p50": round(percentile(lags, 0.50), 2),
            "p99": round(percentile(lags, 0.99), 2),
            "max": round(max(lags), 2),
        }
        if lags
        else {}
    )
    pipeline = [run for run in runs if run["dag_id"] == PIPELINE_DAG]
    checks = {
        "lag_p99_within_target": bool(lag) and lag["p99"] <= TARGET_LAG_P99_SECONDS,
        "pipeline_ran": bool(pipeline),
        "every_run_green": all(run["state"] == "success" for run in runs),
        "every_run_within_target": all(
            run["seconds"] is not None and run["seconds"] <= TARGET_RUN_SECONDS for run in runs
        ),
        "services_measured": bool(growth) and set(growth) == set(memory_start),
        "memory_growth_within_target": all(value <= TARGET_RSS_GROWTH for value in growth.values()),
    }
    return {
        "lag_samples": len(lags),
        "lag_seconds": lag,
        "dag_runs": runs,
        "memory_start_pss_bytes": memory_start,
        "memory_end_pss_bytes": memory_end,
        "memory_growth": growth,
        "memory_growth_second_half": second_half,
        "memory_pss_series": series or [],
        **checks,
        "within_target": all(checks.values()),
    }


# --- the stack ---------------------------------------------------------------------


def _make(target: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise SystemExit(f"make {target} failed for the soak: {' '.join(tail)}")


@contextmanager
def soak_stack(rate: int) -> Iterator[dict[str, str]]:
    root = make_tempdir("smart-access-soak-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_", "AIRFLOW"))}
    env.update(free_stack_ports())
    env.update(SMART_ACCESS_STACK_DIR=str(root / "stack"), SIMULATOR_RATE=str(rate))
    try:
        logger.info("make up (stack in %s, simulator at %d events/s)", root, rate)
        _make("up", env)
        yield env
    finally:
        logger.info("make down")
        down = ["make", "--no-print-directory", "down"]
        subprocess.run(down, cwd=REPO, env=env, capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)


def service_memory(config: StackConfig) -> dict[str, dict[str, int]]:
    """Resident bytes of each running service with its child processes: RSS, and PSS
    (each shared page divided among the processes mapping it). PostgreSQL's backends
    all map its shared buffers, so their RSS sums count those pages once per backend;
    PSS counts them once, which is why the growth check reads PSS."""
    sizes: dict[str, dict[str, int]] = {}
    for name, info in process_info(config).items():
        if info.get("statename") != "RUNNING" or not info.get("pid"):
            continue
        try:
            root = psutil.Process(int(info["pid"]))
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        rss = pss = 0
        for process in tree:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                memory = process.memory_full_info()
                rss += memory.rss
                pss += getattr(memory, "pss", memory.rss)
        sizes[name] = {"rss": rss, "pss": pss}
    return sizes


class LagProbe:
    """Age of the oldest record not yet landed, over the data topics' partitions."""

    def __init__(self, config: StackConfig) -> None:
        from confluent_kafka import Consumer

        self.dsn = config.admin_dsn()
        self.consumer = Consumer(
            {
                **config.kafka_client("admin"),
                "group.id": "smart-access-soak-probe",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )

    def positions(self) -> dict[tuple[str, int], int]:
        with closing(psycopg2.connect(self.dsn)) as conn, conn.cursor() as cur:
            cur.execute(
                "select topic, partition, next_offset from ops.consumer_offsets"
                " where consumer_group = %s and topic = any(%s)",
                (CONSUMER_GROUP, list(DATA_TOPICS)),
            )
            return {(topic, partition): offset for topic, partition, offset in cur.fetchall()}

    def sample(self) -> tuple[float, int]:
        """(seconds, records) behind: the oldest unlanded record's age, the backlog."""
        from confluent_kafka import TopicPartition

        behind: list[TopicPartition] = []
        records = 0
        metadata = self.consumer.list_topics(timeout=10)
        stored = self.positions()
        for topic in DATA_TOPICS:
            partitions = metadata.topics.get(topic)
            if partitions is None:
                continue
            for partition in partitions.partitions:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                position = max(stored.get((topic, partition), low), low)
                if high > position:
                    records += high - position
                    behind.append(TopicPartition(topic, partition, position))
        # every record at a stored position below a log end existed by now: its age
        # is taken from here (a clock read before the positions could precede records
        # the consumer landed meanwhile and give negative ages)
        now = time.time()
        if not behind:
            return 0.0, 0
        self.consumer.assign(behind)
        oldest: dict[tuple[str, int], float] = {}
        deadline = time.monotonic() + 5
        while len(oldest) < len(behind) and time.monotonic() < deadline:
            message = self.consumer.poll(0.5)
            if message is None or message.error():
                continue
            key = (message.topic(), message.partition())
            if key not in oldest:
                oldest[key] = message.timestamp()[1] / 1000
        self.consumer.unassign()
        # a partition whose records are all still in an open transaction shows none:
        # its age is at most the sampling deadline's; the others give the figure
        age = max(now - stamp for stamp in oldest.values()) if oldest else 0.0
        return max(0.0, age), records

    def close(self) -> None:
        self.consumer.close()


# --- Airflow -----------------------------------------------------------------------


class Airflow:
    def __init__(self, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the stack's Airflow on loopback
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            },
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return json.loads(response.read() or b"null")

    def login(self) -> None:
        answer = self.call("POST", "/auth/token", {"username": "airflow", "password": "airflow"})
        self.token = str(answer["access_token"])

    def enable(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the dag-processor serializes the DAG within a minute of `make up`
            try:
                self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise SystemExit(
                        f"cannot enable {dag_id} for the soak: HTTP {exc.code}"
                    ) from None
            time.sleep(3)

    def tasks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Each task instance of a run: its state and seconds (None while it runs)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        try:
            answer = self.call("GET", path + "/taskInstances?limit=100")
        except (urllib.error.URLError, OSError, ValueError) as exc:  # the run's figures stand
            logger.warning("task instances of %s not read: %s", run_id, exc)
            return []
        found = [
            {
                "task_id": task["task_id"],
                "state": task.get("state"),
                "started_at": task.get("start_date"),
                "seconds": None if task.get("duration") is None else round(task["duration"], 1),
            }
            for task in answer["task_instances"]
        ]
        return sorted(found, key=lambda task: task["started_at"] or "")

    def runs(self, with_tasks: bool = False) -> list[dict[str, Any]]:
        found = []
        dags = self.call("GET", "/api/v2/dags?dag_id_pattern=smart_access&limit=100")["dags"]
        for dag in dags:
            answer = self.call("GET", f"/api/v2/dags/{dag['dag_id']}/dagRuns?limit=100")
            for run in answer["dag_runs"]:
                started, ended = run.get("start_date"), run.get("end_date")
                seconds = None
                if started and ended:
                    seconds = (
                        datetime.fromisoformat(ended) - datetime.fromisoformat(started)
                    ).total_seconds()
                found.append(
                    {
                        "dag_id": dag["dag_id"],
                        "run_id": run["dag_run_id"],
                        "run_type": run.get("run_type"),
                        "state": run["state"],
                        "started_at": started,
                        "seconds": None if seconds is None else round(seconds, 1),
                    }
                )
                if with_tasks:
                    found[-1]["tasks"] = self.tasks(dag["dag_id"], run["dag_run_id"])
        return sorted(found, key=lambda run: run["started_at"] or "")

    def wait_idle(self, timeout: float) -> list[dict[str, Any]]:
        """The runs, once none is queued or running (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        runs = self.runs()
        while _busy(runs):
            if time.monotonic() > deadline:
                break
            time.sleep(5)
            runs = self.runs()
        return self.runs(with_tasks=True)


def _busy(runs: list[dict[str, Any]]) -> bool:
    return any(run["state"] in {"queued", "running"} for run in runs)


def _warm(runs: list[dict[str, Any]]) -> bool:
    """The pipeline has finished a run (its caches are filled) and none is in flight."""
    done = any(r["dag_id"] == PIPELINE_DAG and r["seconds"] is not None for r in runs)
    return done and not _busy(runs)


def warmed_up(
    elapsed: float, minutes: float, runs: list[dict[str, Any]], buffers_used: float | None
) -> bool:
    """Memory is measured from here on: the warm-up time has passed, a pipeline run has
    finished and none is in flight, and PostgreSQL's shared buffers are full (None:
    not known, not waited for) - or half the soak has passed, so that there is a
    span left to measure."""
    if elapsed < min(WARMUP_SECONDS, minutes * 30) or not _warm(runs):
        return False
    return buffers_used is None or buffers_used >= BUFFERS_FILLED or elapsed >= minutes * 30


def postgres_buffers_used(dsn: str) -> float | None:
    """The share of PostgreSQL's shared buffers that hold a page (pg_buffercache,
    created in the soak's own database on first use); None when the extension is
    not there."""
    try:
        with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            conn.autocommit = True
            cur.execute("create extension if not exists pg_buffercache")
            cur.execute("select count(relfilenode)::float / count(*) from pg_buffercache")
            return float(cur.fetchone()[0])
    except psycopg2.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        logger.warning("PostgreSQL's buffer use is not known (%s): not waited for", reason)
        return None


def keep_run_logs(logs: Path, runs: list[dict[str, Any]], out: Path) -> list[str]:
    """Copy the Airflow task logs of every run that failed or took longer than the
    target into `out` (the soak's stack, logs included, is removed at its end).
    Returns the run ids kept."""
    kept = []
    for run in runs:
        seconds = run["seconds"]
        if run["state"] == "success" and seconds is not None and seconds <= TARGET_RUN_SECONDS:
            continue
        source = logs / f"dag_id={run['dag_id']}" / f"run_id={run['run_id']}"
        if source.is_dir():
            shutil.copytree(source, out / run["dag_id"] / run["run_id"], dirs_exist_ok=True)
            kept.append(run["run_id"])
    return kept


@contextmanager
def dashboard_open(port: str) -> Iterator[Any]:
    """The dashboard's home page in headless Chromium, as a user leaves it open."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("the soak opens the dashboard in Chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    rate = int(_setting("SOAK_RATE", 2000, int))
    minutes = _setting("SOAK_MINUTES", 60)
    with soak_stack(rate) as env:
        config = StackConfig.from_env(env)
        airflow = Airflow(env)
        airflow.login()
        airflow.enable(PIPELINE_DAG)
        logger.info("%s enabled: it runs on its 15-minute schedule", PIPELINE_DAG)
        probe = LagProbe(config)
        lags: list[float] = []
        with dashboard_open(env["DASHBOARD_PORT"]) as page:
            started = time.monotonic()
            end = started + minutes * 60
            memory_start: dict[str, dict[str, int]] = {}
            buffers_used: float | None = 0.0
            warmup: dict[str, Any] = {}
            series: list[dict[str, Any]] = []
            reloaded = started
            next_report = started + 60
            while time.monotonic() < end:
                seconds, records = probe.sample()
                lags.append(seconds)
                now = time.monotonic()
                if not memory_start and now >= next_report:
                    buffers_used = postgres_buffers_used(config.admin_dsn())
                if not memory_start and warmed_up(
                    now - started, minutes, airflow.runs(), buffers_used
                ):  # between DAG runs, as at the end: a running task's process is no growth
                    memory_start = service_memory(config)
                    warmup = {"minute": round((now - started) / 60, 1), "buffers": buffers_used}
                    series.append({"minute": warmup["minute"], "pss": _pss(memory_start)})
                    logger.info(
                        "memory after warm-up at %.1f min, PostgreSQL's shared buffers %s"
                        " full (PSS): %s",
                        warmup["minute"],
                        "?" if buffers_used is None else f"{buffers_used:.0%}",
                        _megabytes(memory_start),
                    )
                if now - reloaded >= RELOAD_SECONDS:
                    page.reload(wait_until="domcontentloaded")
                    reloaded = now
                if now >= next_report:
                    next_report = now + 60
                    runs = airflow.runs()
                    minute = round((now - started) / 60, 1)
                    if memory_start and not _busy(runs):
                        series.append({"minute": minute, "pss": _pss(service_memory(config))})
                    logger.info(
                        "%5.1f min: lag %.2f s (%d records behind); DAG runs: %s",
                        minute,
                        seconds,
                        records,
                        ", ".join(map(_run_text, runs)) or "none yet",
                    )
                time.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - now)))
        probe.close()
        runs = airflow.wait_idle(TARGET_RUN_SECONDS + 60)
        memory_end = service_memory(config)
        logs_out = REPO / "benchmarks" / "results" / "soak-logs"
        shutil.rmtree(logs_out, ignore_errors=True)
        kept = keep_run_logs(config.log_dir / "airflow", runs, logs_out)
        if kept:
            logger.info("task logs of the runs over target or failed: %s", logs_out)
    result = {
        "benchmark": "soak",
        "measured_at": datetime.now(UTC).isoformat(),
        "rate_events_per_second": rate,
        "minutes": minutes,
        "sample_seconds": SAMPLE_SECONDS,
        "memory_warmup_minute": warmup.get("minute"),
        "postgres_buffers_used_at_warmup": warmup.get("buffers"),
        "kept_run_logs": kept,
        **summarize(lags, runs, _pss(memory_start), _pss(memory_end), series),
        "memory_start_rss_bytes": {name: m["rss"] for name, m in memory_start.items()},
        "memory_end_rss_bytes": {name: m["rss"] for name, m in memory_end.items()},
        "target_lag_p99_seconds": TARGET_LAG_P99_SECONDS,
        "target_run_seconds": TARGET_RUN_SECONDS,
        "target_rss_growth": TARGET_RSS_GROWTH,
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    out = REPO / "benchmarks" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _report(result)
    return 0 if result["within_target"] else 1


def _run_text(run: dict[str, Any]) -> str:
    """`success 76.3s`, or the state alone while the run's length is not known."""
    return run["state"] if run["seconds"] is None else f"{run['state']} {run['seconds']}s"


def _pss(memory: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: sizes["pss"] for name, sizes in memory.items()}


def _megabytes(memory: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{name} {m['pss'] / 2**20:.0f} MB" for name, m in sorted(memory.items()))


def _report(result: dict[str, Any]) -> None:
    lag = result["lag_seconds"]
    lines = [
        f"soak: {result['minutes']} min at {result['rate_events_per_second']} events/s,"
        f" load average {result['load_average']}",
        f"consumer lag (s, {result['lag_samples']} samples): p50 {lag.get('p50')}"
        f"  p99 {lag.get('p99')} (target <= {TARGET_LAG_P99_SECONDS})  max {lag.get('max')}",
        f"{'DAG run':60} {'state':>8} {'seconds':>8}",
    ]
    for run in result["dag_runs"]:
        name = f"{run['dag_id']} {run['run_id']}"
        lines.append(f"{name:60.60} {run['state']:>8} {run['seconds']!s:>8}")
        for task in run.get("tasks", []):
            lines.append(
                f"{'  ' + task['task_id']:60.60} {task['state']!s:>8} {task['seconds']!s:>8}"
            )
    lines.append(
        f"{'service (MB)':24} {'RSS start':>10} {'RSS end':>10} {'PSS start':>10}"
        f" {'PSS end':>10} {'PSS growth':>11} {'2nd half':>9}"
    )
    for name, growth in result["memory_growth"].items():
        figures = [
            result[key].get(name, 0) / 2**20
            for key in (
                "memory_start_rss_bytes",
                "memory_end_rss_bytes",
                "memory_start_pss_bytes",
                "memory_end_pss_bytes",
            )
        ]
        later = result["memory_growth_second_half"].get(name)
        lines.append(
            f"{name:24} "
            + " ".join(f"{x:10.0f}" for x in figures)
            + f" {growth:11.1%}"
            + (f" {later:9.1%}" if later is not None else f" {'-':>9}")
        )
    missed = [key for key in CHECKS if not result[key]]
    lines.append(f"soak: missed: {', '.join(missed)}" if missed else "soak: within every target")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
