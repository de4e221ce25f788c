"""Configuration, from CANONLOG_* environment variables or explicit values."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    data_dir: Path = Field(default=Path(".canonlog"), description="embedded server's directory")
    ledger: str = Field(default=DEFAULT_LEDGER, min_length=1, max_length=256)
    writer_id: str = Field(default="writer-1", min_length=1, max_length=256)
    pool_size: int = Field(default=10, ge=1, le=1000)
    redis_url: str | None = Field(
        default=None, description="Redis for the lease and halt channel; unset = PostgreSQL lease"
    )
    lease_ttl: float = Field(default=10.0, gt=0, description="seconds a lease lasts unrenewed")
    lease_renew_interval: float = Field(default=2.0, gt=0)
    batch_max_requests: int = Field(default=1024, ge=1)
    batch_max_events: int = Field(default=8192, ge=1)
    batch_max_wait: float = Field(default=0.0, ge=0, description="seconds to wait for company")
    tail_events: int = Field(default=1000, ge=0, description="events re-verified at startup")
    checkpoint_dir: Path | None = Field(
        default=None, description="where signed checkpoints are published and read"
    )
    migrate_on_start: bool = Field(default=True, description="apply pending migrations at startup")
    max_payload_bytes: int = Field(default=1_048_576, ge=2)
    max_metadata_bytes: int = Field(default=65_536, ge=2)
    max_events_per_append: int = Field(default=10_000, ge=1)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["console", "json"] = "console"

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

    @property
    def embedded(self) -> bool:
        return self.dsn is None

    @property
    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_metadata_bytes=self.max_metadata_bytes,
            max_events_per_append=self.max_events_per_append,
        )
