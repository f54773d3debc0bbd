"""The embedded Apache Kafka broker: jars from Maven Central, KRaft storage, process."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.config import PORT_STEP, REPO_ROOT, StackError, write_private
from streaming.principals import ADMIN
from streaming.principals import SCRAM_MECHANISM as SCRAM

logger = logging.getLogger(__name__)

POM = REPO_ROOT / "stack" / "kafka-jars" / "pom.xml"
LIBS = REPO_ROOT / "stack" / "kafka-jars" / "target" / "libs"
# Prometheus' JMX exporter, attached to the broker as a java agent (not on its class path)
JMX_AGENT = LIBS.parent / "agents" / "jmx_prometheus_javaagent.jar"
JMX_CONFIG = REPO_ROOT / "stack" / "prometheus" / "kafka_jmx.yml"
# Sized for a 2-core, 24 GiB machine that also runs PostgreSQL, Airflow and dbt: the
# broker's usual fixed 1 GB heap, touched at start, so its footprint is what it is
# from the first minute instead of creeping toward -Xmx over hours (which looked like
# a leak in the soak).
HEAP_OPTS = [
    "-Xms1g",
    "-Xmx1g",
    "-XX:+AlwaysPreTouch",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
]
# the storage tool reads these as the syntax of its --add-scram argument
_SCRAM_SYNTAX = set(',=[]"\n')

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
    run_maven(["-f", str(POM), "dependency:copy-dependencies", "dependency:copy"], "the Kafka jars")
    (LIBS / ".complete").touch()
    return LIBS


def run_maven(args: list[str], what: str) -> None:
    """`mvn -q -B <args>`; a failure is one StackError naming `what` with Maven's last lines."""
    result = subprocess.run(["mvn", "-q", "-B", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise StackError(f"Maven could not fetch {what}: {' | '.join(detail)}")


def voters(nodes: list[KafkaNode]) -> str:
    return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    *,
    node_id: int = 1,
    quorum: str | None = None,
    brokers: int = 1,
    tls: TlsFiles | None = None,
    admin_password: str | None = None,
) -> str:
    """One node's configuration. `brokers` nodes form the cluster (each a broker and a
    controller); with `tls` (KAFKA_AUTH=scram) clients speak SASL_SSL with SCRAM,
    the controllers mutual TLS, and the StandardAuthorizer applies the ACLs."""
    replicas = min(brokers, 3)
    min_isr = 2 if replicas >= 3 else 1
    client = "SASL_SSL" if tls is not None else "PLAINTEXT"
    lines = [
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={quorum or f'{node_id}@127.0.0.1:{controller_port}'}",
        f"listeners={client}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners={client}://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        f"inter.broker.listener.name={client}",
        f"listener.security.protocol.map={client}:{client},CONTROLLER:"
        + ("SSL" if tls is not None else "PLAINTEXT"),
        f"log.dirs={data_dir}",
    ]
    if replicas == 1:
        lines.append("# One node: every internal topic has a single replica.")
    else:
        lines += [
            "# Three replicas of everything; a write needs two of them (acks=all), so one",
            "# node may be down without losing a write or refusing one.",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
        ]
    lines += [
        f"offsets.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "num.partitions=3",
        "auto.create.topics.enable=false",
        "# Consumers join at once instead of waiting 3 s for peers.",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.check.interval.ms=60000",
    ]
    if tls is not None:
        if admin_password is None:
            raise ValueError("a TLS node needs the admin principal's password")
        lines += [
            "# KAFKA_AUTH=scram: SCRAM-SHA-512 over TLS for clients and between brokers",
            f"sasl.enabled.mechanisms={SCRAM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN.username}" password="{_jaas_escape(admin_password)}";',
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={tls.keystore}",
            f"ssl.keystore.password={tls.password}",
            f"ssl.key.password={tls.password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca_cert}",
            "# the controllers admit only nodes holding a certificate of this stack's CA",
            "listener.name.controller.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+)(,.*)?$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            "super.users="
            + ";".join(
                [f"User:{ADMIN.username}", *(f"User:{node_cn(i)}" for i in range(1, brokers + 1))]
            ),
        ]
    return "\n".join([*lines, ""])


def _jaas_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def node_cn(node_id: int) -> str:
    return f"smart-access-kafka-{node_id}"


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller) of the embedded cluster."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "server.properties"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    keystore: Path  # PKCS12: the node's key and certificate chain
    password: str


def cluster_nodes(
    root: Path, brokers: int, port: int, controller_port: int, step: int = PORT_STEP
) -> list[KafkaNode]:
    """Node i listens on port + step*(i-1) and controller_port + step*(i-1) (9092, 9192,
    9292 and 9093, 9193, 9293 by default); one node
    keeps the single-broker layout (its files directly in `root`)."""
    return [
        KafkaNode(
            node_id=i,
            port=port + step * (i - 1),
            controller_port=controller_port + step * (i - 1),
            directory=root if brokers == 1 else root / f"node-{i}",
        )
        for i in range(1, brokers + 1)
    ]


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")


def ensure_tls(tls_dir: Path, node_ids: list[int]) -> dict[int, TlsFiles]:
    """A CA for this stack and a certificate per node (127.0.0.1 and localhost), made
    once; private keys and keystores are 0600, the CA certificate is for clients."""
    if not shutil.which("openssl"):
        raise StackError(
            "openssl not found on PATH; install it (sudo apt-get install -y openssl) "
            "or run without KAFKA_AUTH=scram"
        )
    tls_dir.mkdir(parents=True, exist_ok=True)
    tls_dir.chmod(0o700)
    ca_key, ca_cert = tls_dir / "ca.key", tls_dir / "ca.crt"
    password_file = tls_dir / "keystore-password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(24))
    password = password_file.read_text().strip()
    if not ca_cert.exists():
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "825",
            "-subj", "/CN=smart-access-kafka-ca", "-keyout", str(ca_key), "-out", str(ca_cert),
        )  # fmt: skip
        ca_key.chmod(0o600)
        ca_cert.chmod(0o644)
    files: dict[int, TlsFiles] = {}
    for node_id in node_ids:
        name = node_cn(node_id)
        keystore = tls_dir / f"{name}.p12"
        if not keystore.exists():
            key, csr, cert = (tls_dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
            ext = tls_dir / f"{name}.ext"
            ext.write_text(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
            )
            _openssl(
                "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", f"/CN={name}",
                "-keyout", str(key), "-out", str(csr),
            )  # fmt: skip
            key.chmod(0o600)
            _openssl(
                "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(ext),
                "-out", str(cert),
            )  # fmt: skip
            _openssl(
                "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile",
                str(ca_cert), "-name", name, "-passout", f"pass:{password}",
                "-out", str(keystore),
            )  # fmt: skip
            keystore.chmod(0o600)
            csr.unlink()
            ext.unlink()
        files[node_id] = TlsFiles(ca_cert, keystore, password)
    return files


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, never starting with '-'
    (the storage tool would read such an id as an option; Kafka's own ids skip them)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def describe_profile(profile: dict[str, object]) -> str:
    return f"KAFKA_BROKERS={profile['brokers']} KAFKA_AUTH={profile['auth']}"


def _fingerprint(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def check_profile(root: Path, brokers: int, auth: str, admin_password: str | None = None) -> None:
    """One line when the stack's Kafka was made with another broker count or auth, or
    (with auth) another admin password: the brokers log in to each other with it, and
    the password in their metadata stays the one they were formatted with."""
    wanted = {"brokers": brokers, "auth": auth}
    marker = root / "profile.json"
    if marker.exists():
        found = json.loads(marker.read_text())
    elif (root / "data" / "meta.properties").exists():
        found = {"brokers": 1, "auth": "none"}  # made before profiles existed
    else:
        return
    if {k: found.get(k) for k in wanted} != wanted:
        raise StackError(
            f"this stack's Kafka was created with {describe_profile(found)}, not "
            f"{describe_profile(wanted)}: keep it by setting {describe_profile(found)}, "
            "or `make down && make wipe` (deletes the stack's data) and `make up` again"
        )
    made_with = found.get("admin_sha256")
    if (
        auth == "scram"
        and admin_password
        and made_with
        and made_with != _fingerprint(admin_password)
    ):
        raise StackError(
            "KAFKA_ADMIN_PASSWORD differs from the one this stack's Kafka was created with; "
            "set it back (the brokers authenticate to each other with it), or `make down && "
            "make wipe` and `make up` to start over with the new one"
        )


def prepare(
    kafka_dir: Path,
    port: int,
    controller_port: int,
    *,
    brokers: int = 1,
    auth: str = "none",
    admin_password: str | None = None,
    step: int = PORT_STEP,
) -> list[KafkaNode]:
    """Write each node's config and format the KRaft storage once (one cluster id for
    all; with auth the admin's SCRAM credential is in the bootstrap metadata)."""
    check_profile(kafka_dir, brokers, auth, admin_password)
    if auth == "scram" and (not admin_password or _SCRAM_SYNTAX & set(admin_password)):
        raise StackError(
            'KAFKA_ADMIN_PASSWORD must be set and may not contain , = [ ] " or a newline '
            "(the broker's storage tool reads them as syntax); choose another"
        )
    nodes = cluster_nodes(kafka_dir, brokers, port, controller_port, step)
    prepare_nodes(kafka_dir, nodes, auth=auth, admin_password=admin_password)
    return nodes


def prepare_nodes(
    kafka_dir: Path,
    nodes: list[KafkaNode],
    *,
    auth: str = "none",
    admin_password: str | None = None,
) -> None:
    """Write the configs of `nodes` (one cluster) and format whichever are new."""
    brokers = len(nodes)
    tls = ensure_tls(kafka_dir / "tls", [n.node_id for n in nodes]) if auth == "scram" else {}
    quorum = voters(nodes)
    kafka_dir.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        write_private(
            node.config,
            server_properties(
                node.directory / "data",
                node.port,
                node.controller_port,
                node_id=node.node_id,
                quorum=quorum,
                brokers=brokers,
                tls=tls.get(node.node_id),
                admin_password=admin_password,
            ),
        )
        (node.directory / "log4j2.properties").write_text(LOG4J2)
    unformatted = [n for n in nodes if not (n.directory / "data" / "meta.properties").exists()]
    if unformatted:
        cluster_id = _existing_cluster_id(nodes) or new_cluster_id()
        scram: list[str] = []
        if auth == "scram":
            scram = ["--add-scram", f"{SCRAM}=[name={ADMIN.username},password={admin_password}]"]
        for node in unformatted:
            result = subprocess.run(
                [
                    *java_base(node.directory),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(node.config),
                    *scram,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")
        profile: dict[str, object] = {"brokers": brokers, "auth": auth}
        if auth == "scram" and admin_password:
            profile["admin_sha256"] = _fingerprint(admin_password)
        write_private(kafka_dir / "profile.json", json.dumps(profile))


def _existing_cluster_id(nodes: list[KafkaNode]) -> str | None:
    for node in nodes:
        meta = node.directory / "data" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
    return None


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
    bootstrap: str,
    timeout: float = 90.0,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    client: dict[str, Any] | None = None,
    brokers: int = 1,
    credential_variable: str = "KAFKA_ADMIN_PASSWORD",
) -> None:
    """Until `brokers` brokers answer metadata; a refused login or an untrusted
    certificate is one line at once (it does not go away by waiting)."""
    from confluent_kafka.admin import AdminClient

    from streaming.clients import ClientRefused, refusal

    refused: list[str] = []

    def on_error(err: Any) -> None:
        reason = refusal(err, credential_variable)
        if reason:
            refused.append(reason)

    config = {**(client or {"bootstrap.servers": bootstrap}), "error_cb": on_error}
    admin = AdminClient({**config, "log_level": 0})
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"Kafka exited with code {proc.returncode} while starting")
        if refused:
            raise StackError(refused[0])
        try:
            metadata = admin.list_topics(timeout=2)
            seen = len(metadata.brokers)
            if seen >= brokers:
                return
        except ClientRefused as exc:
            raise StackError(str(exc)) from None
        except Exception:
            logger.debug("Kafka at %s not ready yet", bootstrap)
        admin.poll(0.5)  # serves the error callback: why the broker did not answer
    if refused:
        raise StackError(refused[0])
    raise StackError(
        f"Kafka at {bootstrap} not ready after {timeout:.0f}s"
        + (f" ({seen} of {brokers} brokers up)" if brokers > 1 else "")
    )
