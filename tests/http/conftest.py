"""A real uvicorn server on a loopback port, hosting a ledger on the embedded PostgreSQL.

The server runs in a thread with its own event loop, as it would in its own
process; tests talk to it over HTTP with httpx and look at the database directly
when they need to prove that nothing was written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from canonlog.infrastructure.http import ServiceConfig, create_app
from canonlog.infrastructure.http.auth import AuthConfig, load_jwks_file
from canonlog.infrastructure.settings import Settings
from tests.conftest import TestDatabase
from tests.support.servers import APP_ROLE, OPERATOR_ROLE, PgTarget, clone, drop

ISSUER = "https://issuer.canonlog.test"
AUDIENCE = "canonlog-service"
ALL_SCOPES = "read append operate"
GATEWAY_POLICIES = Path(__file__).parents[2] / "examples" / "gateway" / "policies.toml"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Tokens:
    """Mints tokens for the test service: good ones, and each kind of bad one."""

    rsa_key: rsa.RSAPrivateKey
    other_rsa_key: rsa.RSAPrivateKey
    hmac_secret: bytes

    def claims(self, scopes: str = ALL_SCOPES, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now,
                                  "exp": now + 300, "scope": scopes}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def rsa(self, scopes: str = ALL_SCOPES, *, kid: str = "rsa-1", key: rsa.RSAPrivateKey | None = None,
            headers: dict[str, Any] | None = None, **claims: Any) -> str:
        return jwt.encode(self.claims(scopes, **claims), key or self.rsa_key, algorithm="RS256",
                          headers={"kid": kid, **(headers or {})})

    def hs256(self, scopes: str = ALL_SCOPES, *, kid: str = "hmac-1", **claims: Any) -> str:
        return jwt.encode(self.claims(scopes, **claims), self.hmac_secret, algorithm="HS256",
                          headers={"kid": kid})

    def handmade(self, header: dict[str, Any], secret: bytes | None, scopes: str = ALL_SCOPES) -> str:
        """A token built by hand, as an attacker would: PyJWT refuses to make these."""
        signing_input = (_b64(json.dumps(header).encode()) + "." +
                         _b64(json.dumps(self.claims(scopes)).encode()))
        signature = b"" if secret is None else hmac.new(
            secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    @property
    def rsa_public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def bearer(self, scopes: str = ALL_SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rsa(scopes)}"}


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                  rsa.generate_private_key(public_exponent=65537, key_size=2048),
                  b"an HMAC secret of more than thirty-two bytes, for tests only")


@pytest.fixture(scope="session")
def jwks_file(tokens: Tokens, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(tokens.rsa_key.public_key()))
    oct_jwk = {"kty": "oct", "k": _b64(tokens.hmac_secret)}
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig"},
                                         {**oct_jwk, "kid": "hmac-1"}]}))
    return path


@pytest.fixture(scope="session")
def auth_config(jwks_file: Path) -> AuthConfig:
    # HS256 is accepted too, so that refusing an RSA public key as an HMAC secret is
    # the key's own check, not merely the algorithm list's.
    return AuthConfig(required=True, issuer=ISSUER, audience=AUDIENCE,
                      algorithms=("RS256", "HS256"), keys=load_jwks_file(jwks_file))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningService:
    url: str
    settings: Settings
    app_dsn: str

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)


@contextmanager
def serve(settings: Settings, config: ServiceConfig,
          extend: Callable[[FastAPI], None] | None = None) -> Iterator[str]:
    """Runs the service under uvicorn in a thread; yields its base URL once it serves.

    extend may add routes of the test's own to the application first."""
    port = free_port()
    app = create_app(settings, replace(config, port=port))
    if extend is not None:
        extend(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws="wsproto", http="h11"))
    thread = threading.Thread(target=server.run, name="canonlog-http-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def service_settings(app: PgTarget, admin: PgTarget, data_dir: Path, **extra: Any) -> Settings:
    return Settings(dsn=app.uri(), admin_dsn=admin.uri(), data_dir=data_dir,
                    lease_ttl=3.0, lease_renew_interval=0.5, **extra)


@asynccontextmanager
async def running_service(database: TestDatabase, data_dir: Path, config: ServiceConfig,
                          extend: Callable[[FastAPI], None] | None = None,
                          **extra: Any) -> AsyncIterator[RunningService]:
    settings = service_settings(database.app, database.admin, data_dir, **extra)
    with serve(settings, config, extend) as url:
        yield RunningService(url, settings, database.app.uri())


@pytest.fixture(scope="module")
async def shared(pg_admin: PgTarget, pg_template: PgTarget, auth_config: AuthConfig,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningService]:
    """One authenticated service for a module's tests that do not change the ledger's state."""
    target = await clone(pg_admin, pg_template)
    database = TestDatabase(admin=target, app=target.as_user(APP_ROLE),
                            operator=target.as_user(OPERATOR_ROLE))
    config = ServiceConfig(auth=auth_config, max_body_bytes=64 * 1024)
    try:
        async with running_service(database, tmp_path_factory.mktemp("service"), config,
                                   operator_dsn=database.operator.uri(),
                                   gateway_policy_file=GATEWAY_POLICIES,
                                   saga_files_dir=tmp_path_factory.mktemp("saga-files")
                                   ) as service:
            yield service
    finally:
        await drop(pg_admin, target)
