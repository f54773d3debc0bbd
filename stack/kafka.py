"""The embedded Apache Kafka broker: jars from Maven Central, KRaft storage, process."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from stack.config import REPO_ROOT, StackError

logger = logging.getLogger(__name__)

POM = REPO_ROOT / "stack" / "kafka-jars" / "pom.xml"
LIBS = REPO_ROOT / "stack" / "kafka-jars" / "target" / "libs"
# Prometheus' JMX exporter, attached to the broker as a java agent (not on its class path)
JMX_AGENT = LIBS.parent / "agents" / "jmx_prometheus_javaagent.jar"
JMX_CONFIG = REPO_ROOT / "stack" / "prometheus" / "kafka_jmx.yml"
# Sized for a 2-core, 24 GiB machine that also runs PostgreSQL, Airflow and dbt.
HEAP_OPTS = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
"""


def ensure_jars() -> Path:
    """Fetch the broker's jars and the JMX agent with Maven once; later calls are a
    file check."""
    if (LIBS / ".complete").exists() and JMX_AGENT.exists():
        return LIBS
    for tool in ("java", "mvn"):
        if not shutil.which(tool):
            raise StackError(
                f"{tool} not found on PATH; install it (sudo apt-get install -y "
                f"{'openjdk-17-jre-headless' if tool == 'java' else 'maven'}) "
                "or point KAFKA_BOOTSTRAP_SERVERS at your own broker"
            )
    logger.info("fetching Apache Kafka jars from Maven Central (first run only)")
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "dependency:copy"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise StackError(f"Maven could not fetch the Kafka jars: {' | '.join(detail)}")
    (LIBS / ".complete").touch()
    return LIBS


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            # One node: every internal topic has a single replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "num.partitions=3",
            "auto.create.topics.enable=false",
            # Consumers join at once instead of waiting 3 s for peers.
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=60000",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, never starting with '-'
    (the storage tool would read such an id as an option; Kafka's own ids skip them)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare(kafka_dir: Path, port: int, controller_port: int) -> Path:
    """Write the config and format the KRaft storage once. Returns the config path."""
    data = kafka_dir / "data"
    kafka_dir.mkdir(parents=True, exist_ok=True)
    config = kafka_dir / "server.properties"
    config.write_text(server_properties(data, port, controller_port))
    (kafka_dir / "log4j2.properties").write_text(LOG4J2)
    if not (data / "meta.properties").exists():
        cluster_id = new_cluster_id()
        result = subprocess.run(
            [
                *java_base(kafka_dir),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")
    return config


def java_base(kafka_dir: Path) -> list[str]:
    return [
        "java",
        *HEAP_OPTS,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kafka_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={kafka_dir / 'logs'}",
        "-cp",
        f"{LIBS}/*",
    ]


def server_command(kafka_dir: Path, metrics_port: int | None = None) -> list[str]:
    """The broker; with `metrics_port`, Prometheus' JMX agent serves its metrics on
    127.0.0.1:metrics_port (config: stack/prometheus/kafka_jmx.yml)."""
    agent: list[str] = []
    if metrics_port is not None:
        agent = [f"-javaagent:{JMX_AGENT}=127.0.0.1:{metrics_port}:{JMX_CONFIG}"]
    base = java_base(kafka_dir)
    return [base[0], *agent, *base[1:], "kafka.Kafka", str(kafka_dir / "server.properties")]


def wait_ready(
    bootstrap: str, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"Kafka exited with code {proc.returncode} while starting")
        try:
            metadata = admin.list_topics(timeout=2)
            if metadata.brokers:
                return
        except Exception:
            logger.debug("Kafka at %s not ready yet", bootstrap)
        time.sleep(0.5)
    raise StackError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s")
