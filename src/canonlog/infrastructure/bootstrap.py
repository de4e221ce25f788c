"""The composition root: every object canonlog builds from Settings is built here.

Entry points (the CLI, an application's ``canonlog.open()``) and tests take what
they need from this module: the database connections and the event log, the
writer with its lease and halt channels, Redis, and the signed-checkpoint
machinery (stores, signer, trusted keys, trusted checkpoints, publisher, witness).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import structlog

from canonlog.application.checkpoints import CheckpointPublisher, CheckpointSigner, SignedCheckpoints
from canonlog.application.client import LedgerClient, StreamGuard
from canonlog.application.gateway import WriteGateway
from canonlog.application.idempotency import IdempotencyService
from canonlog.application.ports import (
    CanonicalWriter,
    Destination,
    EventLog,
    EventReader,
    HaltChannel,
    HeadStore,
    SagaBackend,
    SagaObserver,
    WriterLease,
)
from canonlog.application.relay import RelayConfig, RelayConsumer
from canonlog.application.witness import CheckpointWitness
from canonlog.application.writer import EventWriterService, WriterConfig
from canonlog.domain.checkpoint import TrustedKey, check_key_name
from canonlog.domain.errors import (
    CheckpointFormatError,
    ConsumerNotFound,
    GatewayPolicyError,
    GovernedStreamRefused,
    OperatorLoginMissing,
)
from canonlog.domain.gateway import RECORDED_EXECUTION_PREFIX, GatewayPolicies, LedgerExecutor
from canonlog.domain.relay import ConsumerSettings
from canonlog.infrastructure.checkpoint_store import DirectoryCheckpointStore, FileWitnessState
from canonlog.infrastructure.destinations import DestinationOptions, open_destination
from canonlog.infrastructure.gateway_policy_file import load_policy_file
from canonlog.infrastructure.head_store import FileHeadStore
from canonlog.infrastructure.keyfiles import load_private_key, public_bytes
from canonlog.infrastructure.parallel_verification import ParallelChainChecker, default_processes
from canonlog.infrastructure.postgres.asyncpg_log import AsyncpgEventLog, translated
from canonlog.infrastructure.postgres.embedded import EmbeddedServer, provision, start_embedded
from canonlog.infrastructure.postgres.idempotency import PostgresIdempotencyStore
from canonlog.infrastructure.postgres.inspector import PostgresInspector
from canonlog.infrastructure.postgres.migrations import migrate
from canonlog.infrastructure.postgres.notifier import PostgresNotifier
from canonlog.infrastructure.postgres.relay_store import AdvisoryConsumerLease, PostgresRelayStore
from canonlog.infrastructure.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from canonlog.application.sagas import SagaOrchestrator
    from canonlog.infrastructure.http.app import ServiceConfig

#: Seconds a command waits for Redis before giving up (the writer uses its renew interval).
_COMMAND_REDIS_TIMEOUT = 2.0


def configure_logging(settings: Settings) -> None:
    """Structured logs to stderr: JSON for machines, key=value for people."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


# -- the database ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connections:
    """Where the runtime role, the administrator and the operator connect."""

    dsn: str
    admin_dsn: str | None
    embedded: EmbeddedServer | None
    operator_dsn: str | None = None


async def _connect(dsn: str) -> asyncpg.Connection:
    async with translated():
        return await asyncpg.connect(dsn)


async def prepare_database(settings: Settings) -> Connections:
    """Starts the embedded server or reaches the configured one, and migrates it."""
    if settings.embedded:
        server = start_embedded(settings.data_dir / "pgdata", stop_at_exit=True)
        await provision(server)
        return Connections(server.dsn(), server.admin_dsn, server, server.operator_dsn)
    assert settings.dsn is not None
    admin = settings.admin_dsn or settings.dsn
    if settings.migrate_on_start:
        conn = await _connect(admin)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return Connections(settings.dsn, admin, None, settings.operator_dsn)


@asynccontextmanager
async def open_event_log(settings: Settings) -> AsyncIterator[tuple[AsyncpgEventLog, Connections]]:
    """Yields the asyncpg EventLog for the configured database, closing it afterwards."""
    connections = await prepare_database(settings)
    log = await AsyncpgEventLog.connect(connections.dsn, max_size=settings.pool_size)
    try:
        yield log, connections
    finally:
        await log.close()


def chain_checker(settings: Settings, dsn: str, processes: int | None = None
                  ) -> ParallelChainChecker:
    """Verification of the database at dsn in processes processes (default: the setting,
    else the cores)."""
    return ParallelChainChecker(dsn, processes or settings.verify_processes
                                or default_processes())


@asynccontextmanager
async def open_governance_log(settings: Settings, *, as_admin: bool = False
                              ) -> AsyncIterator[AsyncpgEventLog]:
    """Yields the asyncpg EventLog as the operator login (operator_dsn; embedded:
    canonlog_ops), or with as_admin as the administrator, who establishes policies.

    Raises OperatorLoginMissing when no operator login is configured: governance
    never runs as the application's login."""
    connections = await prepare_database(settings)
    dsn = (connections.admin_dsn or connections.dsn) if as_admin else connections.operator_dsn
    if dsn is None:
        raise OperatorLoginMissing(
            "governance commands connect as the operator login: set CANONLOG_OPERATOR_DSN "
            "(or --operator-dsn); the application's login only writes and reads")
    log = await AsyncpgEventLog.connect(dsn, max_size=2)
    try:
        yield log
    finally:
        await log.close()


@asynccontextmanager
async def admin_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """Yields one connection as the administrator (admin_dsn, else dsn) to the prepared database."""
    connections = await prepare_database(settings)
    conn = await _connect(connections.admin_dsn or connections.dsn)
    try:
        yield conn
    finally:
        await conn.close()


# -- Redis: the writer lease and the halt channel ---------------------------------------------


@asynccontextmanager
async def _redis(settings: Settings, timeout: float) -> AsyncIterator[Redis | None]:
    """Yields a client of settings.redis_url (None when it is not set), closing it afterwards."""
    if not settings.redis_url:
        yield None
        return
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
    try:
        yield client
    finally:
        await client.aclose()


def _halt_channels(client: Redis | None) -> list[HaltChannel]:
    # The database's halt flag is checked by the append itself, under the ledger
    # lock; Redis adds a channel every process sees at once.
    if client is None:
        return []
    from canonlog.infrastructure.redis.halt import RedisHaltChannel

    return [RedisHaltChannel(client)]


@asynccontextmanager
async def halt_channels(settings: Settings) -> AsyncIterator[list[HaltChannel]]:
    """Yields the channels besides the database that writers read halt state from:
    Redis's halt key when settings.redis_url is set, else none."""
    async with _redis(settings, _COMMAND_REDIS_TIMEOUT) as client:
        yield _halt_channels(client)


def _writer_lease(settings: Settings, client: Redis | None, dsn: str) -> WriterLease:
    if client is not None:
        from canonlog.infrastructure.redis.lease import RedisLease

        return RedisLease(client, settings.ledger, settings.writer_id, ttl=settings.lease_ttl)
    from canonlog.infrastructure.postgres.lease import AdvisoryLockLease

    return AdvisoryLockLease(dsn, settings.ledger, settings.writer_id, ttl=settings.lease_ttl)


# -- signed checkpoints -------------------------------------------------------------------------


def checkpoint_stores(settings: Settings) -> list[DirectoryCheckpointStore]:
    """A store per configured checkpoint directory (none when none is configured)."""
    return [DirectoryCheckpointStore(d) for d in settings.checkpoint_dirs]


def checkpoint_signer(settings: Settings, ledger_id: str) -> CheckpointSigner | None:
    """The ledger's checkpoint signer from checkpoint_key_file, or None when it is not set."""
    if settings.checkpoint_key_file is None:
        return None
    name = settings.checkpoint_key_name or settings.origin_for(ledger_id)
    try:
        check_key_name(name)
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f"{exc}; set checkpoint_key_name") from exc
    return CheckpointSigner(name, load_private_key(settings.checkpoint_key_file))


def trusted_signer_keys(settings: Settings, ledger_id: str) -> list[TrustedKey]:
    """checkpoint_public_keys, and the public half of checkpoint_key_file when it is set."""
    keys = [TrustedKey(name, key) for name, key in settings.trusted_checkpoint_keys]
    signer = checkpoint_signer(settings, ledger_id)
    if signer is not None:
        own = TrustedKey(signer.key_name, public_bytes(signer.private_key))
        if own not in keys:
            keys.append(own)
    return keys


def trusted_witness_keys(settings: Settings) -> list[TrustedKey]:
    """The witnesses whose cosignatures count (witness_keys)."""
    return [TrustedKey.witness(name, key) for name, key in settings.trusted_witness_keys]


def trusted_checkpoints(settings: Settings, ledger_id: str) -> SignedCheckpoints | None:
    """The ledger's TrustedCheckpoints, or None when no checkpoint directory is configured."""
    stores = checkpoint_stores(settings)
    if not stores:
        return None
    return SignedCheckpoints(
        stores, trusted_signer_keys(settings, ledger_id),
        witnesses=trusted_witness_keys(settings),
        witnesses_required=settings.checkpoint_witnesses_required,
        origin=settings.origin_for,
    )


def checkpoint_publisher(settings: Settings, event_log: EventLog,
                         ledger_id: str) -> CheckpointPublisher | None:
    """The background publisher, when both a directory and the signing key are configured."""
    stores = checkpoint_stores(settings)
    signer = checkpoint_signer(settings, ledger_id)
    if not stores or signer is None:
        return None
    return CheckpointPublisher(event_log, ledger_id, signer, stores,
                               origin=settings.origin_for(ledger_id),
                               every_events=settings.checkpoint_every_events,
                               every_seconds=settings.checkpoint_every_seconds)


def checkpoint_witness(settings: Settings, ledger_id: str, *, name: str, key_file: Path,
                       state_file: Path) -> CheckpointWitness | None:
    """A witness named name, with its private key and state file, that cosigns checkpoints
    signed by the ledger's trusted checkpoint keys; None when no such key is configured."""
    log_keys = trusted_signer_keys(settings, ledger_id)
    if not log_keys:
        return None
    return CheckpointWitness(name, load_private_key(key_file), FileWitnessState(state_file),
                             log_keys)


# -- the writer -----------------------------------------------------------------------------------


def writer_config(settings: Settings) -> WriterConfig:
    return WriterConfig(
        ledger_id=settings.ledger,
        writer_id=settings.writer_id,
        max_batch_requests=settings.batch_max_requests,
        max_batch_events=settings.batch_max_events,
        max_wait=settings.batch_max_wait,
        lease_renew_interval=settings.lease_renew_interval,
        tail_events=settings.tail_events,
        append_timeout=settings.append_timeout,
    )


@asynccontextmanager
async def open_ledger(settings: Settings | None = None) -> AsyncIterator[LedgerClient]:
    """Yields a verified, writing LedgerClient for settings.ledger; stops the writer on exit.

    The lease is Redis's when settings.redis_url is set, else a PostgreSQL advisory
    lock; halt state is read from the database and, with Redis, from its halt key.
    """
    settings = settings or Settings()
    if not structlog.is_configured():
        # An application that configures structlog keeps its configuration;
        # otherwise canonlog logs at CANONLOG_LOG_LEVEL rather than structlog's
        # default of every level to stdout.
        configure_logging(settings)
    async with open_event_log(settings) as (event_log, connections), \
            _redis(settings, settings.lease_renew_interval) as redis_client:
        # Signed checkpoints: trusted at startup, published in the background.
        heads: HeadStore = FileHeadStore(settings.data_dir / "writer")
        publisher = checkpoint_publisher(settings, event_log, settings.ledger)
        if publisher is not None:
            heads = publisher.watching(heads)
        writer = EventWriterService(
            event_log, _writer_lease(settings, redis_client, connections.dsn),
            _halt_channels(redis_client), heads,
            writer_config(settings), inspector=PostgresInspector(event_log.pool),
            checkpoints=trusted_checkpoints(settings, settings.ledger),
        )
        notifier = PostgresNotifier(connections.dsn)
        try:
            await writer.start()
            if publisher is not None:
                publisher.start()
            yield LedgerClient(writer, event_log, settings.ledger, notifier=notifier,
                               limits=settings.limits, stream_guard=gateway_stream_guard(settings))
        finally:
            await writer.stop()
            if publisher is not None:
                await publisher.stop()
            await notifier.close()


def gateway_policies(settings: Settings) -> GatewayPolicies:
    """The operator's gateway policies; raises GatewayPolicyError when there is no file."""
    if settings.gateway_policy_file is None:
        raise GatewayPolicyError("the write gateway needs a policy file: set "
                                 "CANONLOG_GATEWAY_POLICY_FILE")
    return load_policy_file(settings.gateway_policy_file)


def gateway_stream_guard(settings: Settings) -> StreamGuard | None:
    """With CANONLOG_GATEWAY_ONE_DOOR, refuses direct appends to the streams the gateway
    governs (its own and every target of its policy file) and under the execution ids
    it records its tickets' writes under; otherwise None."""
    if not settings.gateway_one_door:
        return None
    policies = gateway_policies(settings)

    def refuse_governed(stream_id: str, execution_id: str | None) -> None:
        if policies.governs(stream_id):
            raise GovernedStreamRefused(
                f"stream {stream_id!r} is governed by the write gateway: write it with "
                "`canonlog write` or /v1/gateway")
        if execution_id is not None and execution_id.startswith(RECORDED_EXECUTION_PREFIX):
            raise GovernedStreamRefused(
                f"execution id {execution_id!r} starts with {RECORDED_EXECUTION_PREFIX!r}, "
                "which the write gateway keeps for its tickets' writes")
    return refuse_governed


async def start_gateway(settings: Settings, writer: CanonicalWriter | None,
                        reader: EventReader) -> WriteGateway:
    """A write gateway over writer (None: one that only reads), with the ledger executor
    and the policy file in force (recorded in the chain as a version when it changed)."""
    gateway = WriteGateway(writer, reader, settings.ledger, {"ledger": LedgerExecutor()})
    await gateway.load_policies(gateway_policies(settings), settings.actor or "canonlog")
    return gateway


@asynccontextmanager
async def open_gateway(settings: Settings, *, writing: bool = True
                       ) -> AsyncIterator[WriteGateway]:
    """Yields the write gateway of settings.ledger: over a verified writer (see
    open_ledger), or without one for reads when writing is False."""
    if writing:
        async with open_ledger(settings) as client:
            yield await start_gateway(settings, client.writer, client.event_log)
    else:
        async with open_event_log(settings) as (event_log, _):
            yield await start_gateway(settings, None, event_log)


def service_config(settings: Settings) -> ServiceConfig:
    """The HTTP service's configuration: where it listens, how tokens are checked (keys
    from the JWKS file), its body limit, and where it reads checkpoints.

    Raises AuthConfigError when authentication is required but not configured, or is
    off on an address that is not loopback, and PolicyError for an authorization
    policy that cannot be read or compiled.
    """
    # Imported here so that `import canonlog` does not load the web stack.
    from canonlog.infrastructure.http.app import ServiceConfig
    from canonlog.infrastructure.http.auth import AuthConfig, AuthConfigError, load_jwks_file
    from canonlog.infrastructure.http.authz import PolicyAuthorizer, load_policy
    from canonlog.infrastructure.http.service import CheckpointLagBound, CheckpointSource

    if settings.auth_required:
        if settings.jwks_file is None:
            raise AuthConfigError(
                "authentication is required: set CANONLOG_JWKS_FILE, CANONLOG_JWT_ISSUER and "
                "CANONLOG_JWT_AUDIENCE, or, on a loopback address only, turn it off with "
                "`canonlog serve --no-auth` (CANONLOG_AUTH_REQUIRED=false)")
        keys = load_jwks_file(settings.jwks_file, min_hmac_key_bytes=settings.jwt_min_hmac_key_bytes)
    else:
        keys = ()
    auth = AuthConfig(
        required=settings.auth_required, issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, keys=keys,
        algorithms=tuple(a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()),
    )
    stores = checkpoint_stores(settings)
    # Readiness holds the service to a checkpoint lag only where it publishes checkpoints.
    lag_bound = CheckpointLagBound(
        events=settings.checkpoint_ready_max_lag_events or 3 * settings.checkpoint_every_events,
        seconds=settings.checkpoint_ready_max_lag_seconds or 3 * settings.checkpoint_every_seconds,
    ) if settings.checkpoint_key_file is not None else None
    checkpoints = CheckpointSource(
        stores[0], tuple(trusted_signer_keys(settings, settings.ledger)),
        witnesses=tuple(trusted_witness_keys(settings)),
        trusted=trusted_checkpoints(settings, settings.ledger), lag_bound=lag_bound,
    ) if stores else None
    authorizer = (PolicyAuthorizer(*load_policy(settings.authz_policy_file))
                  if settings.authz_required else None)
    return ServiceConfig(host=settings.http_host, port=settings.http_port, auth=auth,
                         max_body_bytes=settings.http_max_body_bytes, checkpoints=checkpoints,
                         authorizer=authorizer)


# -- sagas ------------------------------------------------------------------------------------


@asynccontextmanager
async def saga_backends(settings: Settings) -> AsyncIterator[dict[str, SagaBackend]]:
    """Yields the configured saga backends by name (relational, graph, vector, kv, file),
    creating the graph and vector tables in the user's database; vector only where the
    server has pgvector."""
    from canonlog.infrastructure.sagas.files import FileBackend
    from canonlog.infrastructure.sagas.kv import KeyValueBackend
    from canonlog.infrastructure.sagas.postgres import (
        GraphBackend,
        RelationalBackend,
        VectorBackend,
        connect_pool,
    )

    backends: dict[str, SagaBackend] = {}
    pool = await connect_pool(settings.saga_backend_dsn) if settings.saga_backend_dsn else None
    saga_redis = settings.saga_redis_url or settings.redis_url
    async with _redis(settings.model_copy(update={"redis_url": saga_redis}),
                      _COMMAND_REDIS_TIMEOUT) as client:
        try:
            if pool is not None:
                graph, vector = GraphBackend(pool), VectorBackend(pool)
                await graph.ensure_schema()
                backends.update(relational=RelationalBackend(pool), graph=graph)
                if await vector.available():
                    await vector.ensure_schema()
                    backends["vector"] = vector
            if client is not None:
                backends["kv"] = KeyValueBackend(client)
            if settings.saga_files_dir is not None:
                backends["file"] = FileBackend(settings.saga_files_dir)
            yield backends
        finally:
            if pool is not None:
                await pool.close()


@asynccontextmanager
async def open_sagas(settings: Settings, client: LedgerClient, *,
                     observer: SagaObserver | None = None) -> AsyncIterator[SagaOrchestrator]:
    """Yields the saga orchestrator on client's ledger with the configured backends, the
    default compensations and the per-saga lock on canonlog's database."""
    from canonlog.application.saga_registry import CompensationRegistry
    from canonlog.application.sagas import SagaOrchestrator
    from canonlog.infrastructure.sagas.postgres import PostgresSagaLocks

    event_log = client.event_log
    assert isinstance(event_log, AsyncpgEventLog) and event_log.dsn is not None
    # A lock holds its connection while its saga runs: a pool of their own, so that
    # many sagas at once cannot take every connection the reads they do need.
    async with translated():
        lock_pool = await asyncpg.create_pool(event_log.dsn, min_size=1,
                                              max_size=settings.pool_size)
    try:
        async with saga_backends(settings) as backends:
            yield SagaOrchestrator(
                client, backends, CompensationRegistry.with_defaults(),
                PostgresSagaLocks(lock_pool), max_attempts=settings.saga_max_attempts,
                retry_base_delay=settings.saga_retry_base_delay, observer=observer)
    finally:
        await lock_pool.close()


# -- the relay ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayWiring:
    """What the relay's commands and endpoints use: the chain's reader, the relay's
    store, the idempotency service, and how to build a consumer's parts."""

    log: AsyncpgEventLog
    store: PostgresRelayStore
    idempotency: IdempotencyService
    dsn: str
    settings: Settings

    def consumer_settings(self, name: str) -> ConsumerSettings:
        return ConsumerSettings(name, self.settings.ledger, self.settings.relay_poison_policy,
                                self.settings.relay_max_attempts)

    async def destination(self, name: str) -> Destination:
        """Opens the destination configured for the consumer (relay_destinations)."""
        url = self.settings.relay_consumers.get(name)
        if url is None:
            raise ConsumerNotFound(f"no destination is configured for consumer {name!r} "
                                   "(CANONLOG_RELAY_DESTINATIONS='NAME=URL ...')")
        secret = (self.settings.relay_webhook_secret or "").encode("utf-8")
        return await open_destination(url, DestinationOptions(secret, self.settings.relay_timeout))

    def consumer(self, name: str, destination: Destination,
                 notifier: PostgresNotifier | None = None) -> RelayConsumer:
        config = RelayConfig(batch_size=self.settings.relay_batch_size,
                             poll_interval=self.settings.relay_poll_interval)
        return RelayConsumer(name, self.log, self.store, destination, notifier=notifier,
                             config=config)

    def lease(self) -> AdvisoryConsumerLease:
        return AdvisoryConsumerLease(self.dsn)


@asynccontextmanager
async def open_relay(settings: Settings) -> AsyncIterator[RelayWiring]:
    """Yields the relay's wiring on the configured database, closing it afterwards."""
    async with open_event_log(settings) as (log, connections):
        store = await PostgresRelayStore.connect(connections.dsn, max_size=settings.pool_size)
        try:
            yield RelayWiring(log, store, IdempotencyService(PostgresIdempotencyStore(store.pool)),
                              connections.dsn, settings)
        finally:
            await store.close()
