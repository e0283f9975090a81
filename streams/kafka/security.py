"""How a radstream process authenticates to Kafka: one reading of the environment for every client.

The worker (Faust/aiokafka) and the hospital publisher (confluent-kafka/librdkafka) take the same
variables, so a deployment configures security once:

| variable | meaning |
|---|---|
| `RADSTREAM_KAFKA_SECURITY` | `plaintext` (default, the local broker) or `sasl_ssl` |
| `RADSTREAM_KAFKA_USER` | SCRAM user name (the principal is `User:<name>`) |
| `RADSTREAM_KAFKA_PASSWORD` | its password; or `RADSTREAM_KAFKA_PASSWORD_FILE` (a mounted secret) |
| `RADSTREAM_KAFKA_CA` | PEM CA bundle that signed the broker certificate (default: system CAs) |
| `RADSTREAM_KAFKA_SASL_MECHANISM` | `SCRAM-SHA-512` (default) or `SCRAM-SHA-256` |

The password never appears in `repr`, logs or error messages.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Protocol = Literal["plaintext", "sasl_ssl"]
PROTOCOLS: tuple[Protocol, ...] = ("plaintext", "sasl_ssl")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


class KafkaSecurityError(ValueError):
    """The security settings are incomplete or contradictory (message never holds a secret)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Client security settings shared by every Kafka client radstream makes."""

    protocol: Protocol = "plaintext"
    username: str = ""
    #: Kept out of repr so that printing Settings never leaks it.
    password: str = field(default="", repr=False)
    #: CA bundle (PEM) that signed the broker certificate; "" trusts the system CAs.
    ca_file: str = ""
    mechanism: str = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"RADSTREAM_KAFKA_SECURITY must be one of {', '.join(PROTOCOLS)}, "
                f"not {self.protocol!r}")
        if self.protocol == "sasl_ssl":
            if not self.username or not self.password:
                raise KafkaSecurityError("sasl_ssl needs RADSTREAM_KAFKA_USER and "
                                         "RADSTREAM_KAFKA_PASSWORD (or _PASSWORD_FILE)")
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(f"unsupported SASL mechanism {self.mechanism!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env
        password = env.get("RADSTREAM_KAFKA_PASSWORD", "")
        password_file = env.get("RADSTREAM_KAFKA_PASSWORD_FILE", "")
        if not password and password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise KafkaSecurityError(f"cannot read RADSTREAM_KAFKA_PASSWORD_FILE "
                                         f"{password_file}: {exc.strerror}") from None
        protocol = env.get("RADSTREAM_KAFKA_SECURITY", "plaintext").strip().lower()
        return cls(protocol=protocol,  # type: ignore[arg-type]  # checked in __post_init__
                   username=env.get("RADSTREAM_KAFKA_USER", ""),
                   password=password,
                   ca_file=env.get("RADSTREAM_KAFKA_CA", ""),
                   mechanism=env.get("RADSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"))

    @property
    def enabled(self) -> bool:
        return self.protocol != "plaintext"

    def librdkafka(self) -> dict[str, Any]:
        """confluent-kafka settings to merge into a Producer/Consumer/AdminClient config."""
        if not self.enabled:
            return {}
        conf: dict[str, Any] = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": self.mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password,
            # Verify the broker's name against its certificate (librdkafka's default, stated).
            "ssl.endpoint.identification.algorithm": "https",
        }
        if self.ca_file:
            conf["ssl.ca.location"] = self.ca_file
        return conf

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client TLS context (hostname checked) trusting `ca_file`."""
        return ssl.create_default_context(cafile=self.ca_file or None)

    def faust_credentials(self) -> Any:
        """`faust.App(broker_credentials=...)`: SASL over TLS, or None for plaintext."""
        if not self.enabled:
            return None
        import faust  # the publisher side never needs Faust

        return faust.SASLCredentials(username=self.username, password=self.password,
                                     ssl_context=self.ssl_context(), mechanism=self.mechanism)
