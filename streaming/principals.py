"""Who may do what on Kafka when authentication is on (`KAFKA_AUTH=scram`).

Each client of the platform logs in as its own SCRAM-SHA-512 principal and gets
only the operations it needs. This table is the one source of those grants: `make
up` creates them on the embedded cluster, the compose init service creates the
same, and the README's table for a real cluster is this one.

    principal                   may
    smart-access-admin          everything (super user: the brokers, `make up`)
    smart-access-simulator      write the three data topics
    smart-access-consumer       read the data topics, write the DLQ, use its group
    smart-access-airflow        describe and read the topics, the sink group's offsets,
                                its DLQ watcher group
    smart-access-inspector      describe and read everything, never write
    smart-access-operator       redrive and replay: read and write the platform's
                                topics, describe its groups

Passwords come from `KAFKA_<ROLE>_PASSWORD` (e.g. KAFKA_SIMULATOR_PASSWORD); the
defaults below are local-development values for a loopback-only stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streaming.topics import CONSUMER_GROUP, DATA_TOPICS, DLQ, TOPICS

__all__ = [
    "ACLS",
    "ADMIN",
    "DLQ_WATCHER_GROUP",
    "PRINCIPALS",
    "SCRAM_MECHANISM",
    "Grant",
    "Principal",
    "password_variable",
]

SCRAM_MECHANISM = "SCRAM-SHA-512"
DLQ_WATCHER_GROUP = "smart-access-dlq-watcher"

ResourceKind = Literal["topic", "group", "cluster"]
PatternKind = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "describe_configs"]


@dataclass(frozen=True)
class Principal:
    role: str  # admin, simulator, ...: names the password variable
    default_password: str

    @property
    def username(self) -> str:
        return f"smart-access-{self.role}"


@dataclass(frozen=True)
class Grant:
    role: str
    resource: ResourceKind
    name: str  # "*" is every resource of the kind; the cluster's is "kafka-cluster"
    operations: tuple[Operation, ...]
    pattern: PatternKind = "literal"


ADMIN = Principal("admin", "kafka-admin")
PRINCIPALS: tuple[Principal, ...] = (
    ADMIN,
    Principal("simulator", "kafka-simulator"),
    Principal("consumer", "kafka-consumer"),
    Principal("airflow", "kafka-airflow"),
    Principal("inspector", "kafka-inspector"),
    Principal("operator", "kafka-operator"),
)

_ALL_TOPICS = tuple(spec.name for spec in TOPICS)

ACLS: tuple[Grant, ...] = (
    # the simulator produces (idempotently: WRITE on a topic covers its producer id)
    *(Grant("simulator", "topic", t, ("write", "describe")) for t in DATA_TOPICS),
    # the sink reads the data topics, copies dead letters to the DLQ, commits for lag
    *(Grant("consumer", "topic", t, ("read", "describe")) for t in DATA_TOPICS),
    Grant("consumer", "topic", DLQ, ("write", "describe")),
    Grant("consumer", "group", CONSUMER_GROUP, ("read", "describe")),
    # the lag gate reads watermarks and the sink group's committed offsets; the DLQ
    # watcher reads the DLQ in its own group
    *(Grant("airflow", "topic", t, ("read", "describe")) for t in _ALL_TOPICS),
    Grant("airflow", "group", CONSUMER_GROUP, ("describe",)),
    Grant("airflow", "group", DLQ_WATCHER_GROUP, ("read", "describe")),
    # the :8090 inspector browses everything and changes nothing
    Grant("inspector", "topic", "*", ("read", "describe", "describe_configs")),
    Grant("inspector", "group", "*", ("describe",)),
    Grant("inspector", "cluster", "kafka-cluster", ("describe", "describe_configs")),
    # redrive (DLQ -> data topics) and replay (probes the log, checks the group is idle)
    Grant("operator", "topic", "smart-access.", ("read", "write", "describe"), "prefixed"),
    Grant("operator", "group", "smart-access-", ("read", "describe"), "prefixed"),
)


def password_variable(role: str) -> str:
    return f"KAFKA_{role.upper()}_PASSWORD"


def passwords(env: dict[str, str]) -> dict[str, str]:
    """Each principal's password: its variable, else the local default."""
    return {p.role: env.get(password_variable(p.role)) or p.default_password for p in PRINCIPALS}


def username(role: str) -> str:
    return Principal(role, "").username


_ENV_NAMES = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_SASL_USERNAME",
    "sasl.password": "KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "KAFKA_SSL_CA_LOCATION",
}


def client_config(
    bootstrap: str, role: str, password: str | None, ca_location: str | None
) -> dict[str, str]:
    """librdkafka settings of a client logging in as `role` over SASL_SSL; plaintext
    (bootstrap only) when `password` is None."""
    config = {"bootstrap.servers": bootstrap}
    if password is not None:
        config |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": username(role),
            "sasl.password": password,
        }
        if ca_location:
            config["ssl.ca.location"] = ca_location
    return config


def client_env(config: dict[str, str], role: str) -> dict[str, str]:
    """The same settings as the KAFKA_* variables a platform process reads
    (streaming.settings.KafkaSettings), naming the password variable to fix."""
    env = {_ENV_NAMES[key]: value for key, value in config.items()}
    if "sasl.password" in config:
        env["KAFKA_CREDENTIAL_VARIABLE"] = password_variable(role)
    return env


def acl_bindings(grants: tuple[Grant, ...] = ACLS) -> list[Any]:
    """The grants as confluent_kafka AclBindings (ALLOW, from any host)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    kinds = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "cluster": ResourceType.BROKER,  # librdkafka's name for the cluster resource
    }
    patterns = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
    return [
        AclBinding(
            kinds[grant.resource],
            grant.name,
            patterns[grant.pattern],
            f"User:{username(grant.role)}",
            "*",
            getattr(AclOperation, operation.upper()),
            AclPermissionType.ALLOW,
        )
        for grant in grants
        for operation in grant.operations
    ]


def ensure_principals(
    admin_config: Mapping[str, Any], secrets: dict[str, str], timeout: float = 30.0
) -> tuple[list[str], int, int]:
    """Make the cluster's SCRAM users and ACLs match this module (idempotent).

    `admin_config` logs in as the admin principal. Every principal's credential is
    set to its password from `secrets` (role -> password); the platform principals'
    ACLs become exactly `ACLS`: missing ones are created, others of theirs deleted.
    Returns (usernames set, ACLs created, ACLs deleted).
    """
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(dict(admin_config))
    upserts: list[Any] = [
        UserScramCredentialUpsertion(
            principal.username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            secrets[principal.role].encode(),
        )
        for principal in PRINCIPALS
    ]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
        future.result()
    wanted = {str(binding): binding for binding in acl_bindings()}
    present: dict[str, Any] = {}
    for principal in PRINCIPALS:
        found = admin.describe_acls(
            AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type]  # None matches any name
                ResourcePatternType.ANY,
                f"User:{principal.username}",
                None,  # type: ignore[arg-type]  # None matches any host
                AclOperation.ANY,
                AclPermissionType.ANY,
            ),
            request_timeout=timeout,
        ).result()
        present.update({str(binding): binding for binding in found})
    missing = [binding for key, binding in wanted.items() if key not in present]
    stale = [binding for key, binding in present.items() if key not in wanted]
    if missing:
        for future in admin.create_acls(missing, request_timeout=timeout).values():
            future.result()
    if stale:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in stale
        ]
        for future in admin.delete_acls(filters, request_timeout=timeout).values():
            future.result()
    return [p.username for p in PRINCIPALS], len(missing), len(stale)
