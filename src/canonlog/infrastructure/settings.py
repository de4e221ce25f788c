"""Configuration, from CANONLOG_* environment variables or explicit values."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from canonlog.application.checkpoints import default_origin
from canonlog.domain.events import DEFAULT_LEDGER, Limits


class Settings(BaseSettings):
    """Every setting canonlog reads. Library code takes a Settings; it reads no environment.

    ``dsn`` names the runtime role's connection (a URI; ``postgresql://`` alone takes
    everything from libpq's PGHOST, PGUSER and friends). Without it canonlog runs the
    embedded PostgreSQL in ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="CANONLOG_", extra="forbid")

    dsn: str | None = Field(default=None, description="runtime connection URI; unset = embedded")
    admin_dsn: str | None = Field(
        default=None, description="connection for migrations and superuser tasks; defaults to dsn"
    )
    operator_dsn: str | None = Field(
        default=None, description="the operator login's connection, for governance commands "
                                  "(embedded: the canonlog_ops role)"
    )
    data_dir: Path = Field(default=Path(".canonlog"), description="embedded server's directory")
    ledger: str = Field(default=DEFAULT_LEDGER, min_length=1, max_length=256)
    writer_id: str = Field(default="writer-1", min_length=1, max_length=256)
    pool_size: int = Field(default=10, ge=1, le=1000)
    redis_url: str | None = Field(
        default=None, description="Redis for the lease and halt channel; unset = PostgreSQL lease"
    )
    lease_ttl: float = Field(default=10.0, gt=0, description="seconds a lease lasts unrenewed")
    lease_renew_interval: float = Field(default=2.0, gt=0)
    append_timeout: float | None = Field(
        default=30.0, gt=0, description="seconds an append may wait for its outcome before it "
                                        "fails with AppendTimeout (outcome unknown); None = no deadline"
    )
    batch_max_requests: int = Field(default=1024, ge=1)
    batch_max_events: int = Field(default=8192, ge=1)
    batch_max_wait: float = Field(default=0.0, ge=0, description="seconds to wait for company")
    tail_events: int = Field(default=1000, ge=0, description="events re-verified at startup")
    checkpoint_dir: Path | None = Field(
        default=None, description="where signed checkpoints are published and read"
    )
    # -- signed checkpoints (docs/reference/checkpoints.md) --
    checkpoint_mirror_dirs: str = Field(
        default="", description="further checkpoint directories, comma-separated; "
                                "published to and read like checkpoint_dir"
    )
    checkpoint_key_file: Path | None = Field(
        default=None, description="private key of the ledger's checkpoint signer; set = publish"
    )
    checkpoint_key_name: str | None = Field(
        default=None, description="key name in checkpoint signature lines (default: the origin)"
    )
    checkpoint_origin: str | None = Field(
        default=None, description="origin line of checkpoints (default: canonlog/<ledger>)"
    )
    checkpoint_public_keys: str = Field(
        default="", description="trusted checkpoint signers, 'name=hex' entries, comma-separated"
    )
    witness_keys: str = Field(
        default="", description="trusted witness public keys, 'name=hex' entries, comma-separated"
    )
    checkpoint_witnesses_required: int = Field(
        default=0, ge=0, description="witness cosignatures a checkpoint needs to be trusted"
    )
    require_checkpoints: bool = Field(
        default=False, description="verify fails when no trusted checkpoint is found"
    )
    verify_processes: int | None = Field(
        default=None, ge=1, description="processes `canonlog verify` checks ranges of the ledger "
        "in (default: the cores this process may run on)")
    checkpoint_every_events: int = Field(default=1000, ge=1, description="publish after N events")
    checkpoint_every_seconds: float = Field(
        default=60.0, gt=0, description="publish after T seconds when the head moved"
    )
    checkpoint_ready_max_lag_events: int | None = Field(
        default=None, ge=1, description="events past the newest checkpoint beyond which the "
        "service is not ready, while it publishes (default: 3 x checkpoint_every_events)")
    checkpoint_ready_max_lag_seconds: float | None = Field(
        default=None, gt=0, description="seconds the newest event may wait for a checkpoint "
        "before the service is not ready, while it publishes (default: 3 x checkpoint_every_seconds)")
    # -- ceremonies (docs/operations.md); thresholds and waits are the ledger's policy --
    actor: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="who governance commands record as the actor; default: the OS user",
    )
    migrate_on_start: bool = Field(default=True, description="apply pending migrations at startup")
    max_payload_bytes: int = Field(default=1_048_576, ge=2)
    max_metadata_bytes: int = Field(default=65_536, ge=2)
    max_events_per_append: int = Field(default=10_000, ge=1)
    # -- the HTTP service (docs/how-to/service.md) --
    http_host: str = Field(default="127.0.0.1", min_length=1, description="address `serve` binds")
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="larger request bodies are refused (413)"
    )
    auth_required: bool = Field(
        default=True, description="require a bearer JWT; off only on a loopback address"
    )
    jwks_file: Path | None = Field(default=None, description="JSON Web Key Set of the token keys")
    jwt_issuer: str | None = Field(default=None, description="the required iss claim")
    jwt_audience: str | None = Field(default=None, description="the required aud claim")
    jwt_algorithms: str = Field(
        default="RS256,ES256,EdDSA", description="accepted token algorithms, comma-separated"
    )
    jwt_min_hmac_key_bytes: int = Field(default=32, ge=32, description="shortest HMAC key accepted")
    authz_required: bool = Field(
        default=False, description="decide every request by the Rego policy as well as by scopes"
    )
    authz_policy_file: Path | None = Field(
        default=None, description="the Rego policy (default: the shipped default.rego)"
    )
    gateway_policy_file: Path | None = Field(
        default=None, description="the write gateway's policy file (TOML); unset: no gateway")
    gateway_one_door: bool = Field(
        default=False, description="refuse direct appends to streams the gateway governs")
    # -- sagas (docs/reference/sagas.md) --
    saga_max_attempts: int = Field(default=3, ge=1, le=100,
                                   description="attempts per saga step or compensation")
    saga_retry_base_delay: float = Field(default=0.5, ge=0, description="seconds before the "
                                         "first retry; each further retry waits twice as long")
    saga_stale_after: float = Field(default=30.0, gt=0, description="seconds an unfinished saga "
                                    "stays still before the worker resumes it")
    saga_worker_interval: float = Field(default=5.0, gt=0, description="seconds between passes")
    saga_backend_dsn: str | None = Field(default=None, description="the user's database for the "
                                         "relational, graph and (with pgvector) vector backends")
    saga_redis_url: str | None = Field(default=None, description="the key-value backend's server")
    saga_files_dir: Path | None = Field(default=None, description="the file backend's directory")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["console", "json"] = "console"
    # -- the relay and webhook intake
    relay_destinations: str = Field(
        default="", description="relay consumers, 'NAME=URL' separated by spaces or newlines")
    relay_webhook_secret: str | None = Field(default=None, description="signs webhook deliveries")
    relay_timeout: float = Field(default=10.0, gt=0, description="seconds a destination may take")
    relay_max_attempts: int = Field(default=8, ge=1, description="attempts before the poison policy")
    relay_poison_policy: Literal["stop", "dead_letter"] = "dead_letter"
    relay_batch_size: int = Field(default=500, ge=1, le=100_000)
    relay_poll_interval: float = Field(default=1.0, gt=0, description="seconds between polls")
    webhook_intake_secret: str | None = Field(
        default=None, description="HMAC secret of incoming webhooks; unset: intake refuses all")
    webhook_replay_window: float = Field(default=300.0, gt=0, description="seconds of clock skew")

    @model_validator(mode="after")
    def _renewal_within_ttl(self) -> Settings:
        # A lease is trusted until 0.9 x ttl after its last renewal was sent, so
        # renewing at most every third of the ttl leaves two tries before it lapses.
        if self.lease_renew_interval > self.lease_ttl / 3:
            raise ValueError(
                f"lease_renew_interval ({self.lease_renew_interval}s) must be at most a third "
                f"of lease_ttl ({self.lease_ttl}s)"
            )
        return self

    @field_validator("relay_destinations")
    @classmethod
    def _relay_destinations_parse(cls, value: str) -> str:
        parse_relay_destinations(value)
        return value

    @field_validator("checkpoint_public_keys", "witness_keys")
    @classmethod
    def _named_keys_parse(cls, value: str) -> str:
        parse_named_keys(value)
        return value

    @property
    def embedded(self) -> bool:
        return self.dsn is None

    @property
    def checkpoint_dirs(self) -> list[Path]:
        """Every configured checkpoint directory, checkpoint_dir first."""
        extra = [Path(p.strip()) for p in self.checkpoint_mirror_dirs.split(",") if p.strip()]
        return ([self.checkpoint_dir] if self.checkpoint_dir else []) + extra

    @property
    def trusted_checkpoint_keys(self) -> list[tuple[str, bytes]]:
        return parse_named_keys(self.checkpoint_public_keys)

    @property
    def trusted_witness_keys(self) -> list[tuple[str, bytes]]:
        return parse_named_keys(self.witness_keys)

    def origin_for(self, ledger_id: str) -> str:
        """The origin line of the ledger's checkpoints."""
        return self.checkpoint_origin or default_origin(ledger_id)

    @property
    def relay_consumers(self) -> dict[str, str]:
        """The configured relay consumers: name -> destination URL."""
        return parse_relay_destinations(self.relay_destinations)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_metadata_bytes=self.max_metadata_bytes,
            max_events_per_append=self.max_events_per_append,
        )


def parse_named_keys(text: str) -> list[tuple[str, bytes]]:
    """Parses 'name=hex, name=hex' into (name, 32-byte Ed25519 public key) pairs."""
    keys: list[tuple[str, bytes]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, equals, hex_key = entry.rpartition("=")
        if not equals or not name.strip():
            raise ValueError(f"key entry {entry!r} is not 'name=hex'")
        try:
            raw = bytes.fromhex(hex_key.strip())
        except ValueError:
            raise ValueError(f"public key of {name.strip()!r} is not hex") from None
        if len(raw) != 32:
            raise ValueError(f"public key of {name.strip()!r} is {len(raw)} bytes; Ed25519 keys are 32")
        keys.append((name.strip(), raw))
    return keys


def parse_relay_destinations(text: str) -> dict[str, str]:
    """Parses 'NAME=URL NAME=URL' (spaces or newlines between entries) into name -> URL."""
    consumers: dict[str, str] = {}
    for entry in text.split():
        name, equals, url = entry.partition("=")
        if not equals or not name or not url:
            raise ValueError(f"relay destination {entry!r} is not 'NAME=URL'")
        if name in consumers:
            raise ValueError(f"relay consumer {name!r} is named twice")
        consumers[name] = url
    return consumers
