"""Bearer-token authentication (JWT, with PyJWT) and scope checks.

What a token may choose is nothing: the accepted algorithms are configured, the
key is looked up by ``kid`` among the configured keys only (``jku``, ``x5u``,
``jwk`` and ``x5c`` headers are never read), and each key accepts only the
algorithms of its own type, so an RSA public key is never taken as an HMAC
secret and ``alg=none`` matches no key. ``exp``, ``iss``, ``aud`` and ``sub`` are
required. A refusal says which check failed, never anything about a key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from canonlog.infrastructure.http.authz import PolicyAuthorizer
from canonlog.infrastructure.http.errors import ApiError

#: Scopes a token can carry: read the ledger, append to it, operate it (halt, verify).
SCOPES: Final = ("read", "append", "operate", "approve", "request", "commit")

_ALGORITHMS_BY_KEY_TYPE: Final[Mapping[str, frozenset[str]]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512", "ES256K"}),
    "OKP": frozenset({"EdDSA"}),
    "oct": frozenset({"HS256", "HS384", "HS512"}),
}

#: How the OpenAPI document describes the scheme; the check itself is authenticate().
bearer_scheme = HTTPBearer(auto_error=False, description="A JWT whose `scope` claim grants "
                                                         "read, append or operate.")


class AuthConfigError(ValueError):
    """The authentication configuration or its key set is unusable."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A configured key: its id, the key object PyJWT verifies with, the algorithms it accepts."""

    kid: str
    key: Any
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How tokens are checked. ``required=False`` only for a loopback-bound development server."""

    required: bool = True
    issuer: str | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    keys: tuple[VerificationKey, ...] = ()
    leeway_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.required:
            return
        if not self.issuer or not self.audience:
            raise AuthConfigError("authentication needs an issuer and an audience")
        if not self.keys:
            raise AuthConfigError("authentication needs at least one key (a JWKS file)")
        if any(a.lower() == "none" for a in self.algorithms):
            raise AuthConfigError("the algorithm 'none' cannot be accepted")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as, and the scopes its token granted."""

    subject: str
    scopes: frozenset[str] = field(default_factory=frozenset)


ANONYMOUS: Final = Principal("anonymous", frozenset(SCOPES))


def load_jwks(text: str, *, min_hmac_key_bytes: int = 32) -> tuple[VerificationKey, ...]:
    """Parses a JWKS document into keys; raises AuthConfigError naming the bad entry.

    Every key needs a ``kid``. An HMAC key shorter than min_hmac_key_bytes and an
    asymmetric key carrying private material are refused.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise AuthConfigError(f"the key set is not JSON: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise AuthConfigError("the key set has no 'keys' list")
    keys: dict[str, VerificationKey] = {}
    for number, entry in enumerate(entries, 1):
        keys_entry = _key_from_jwk(entry, number, min_hmac_key_bytes)
        if keys_entry.kid in keys:
            raise AuthConfigError(f"key {number}: kid {keys_entry.kid!r} appears twice")
        keys[keys_entry.kid] = keys_entry
    return tuple(keys.values())


def _key_from_jwk(entry: object, number: int, min_hmac_key_bytes: int) -> VerificationKey:
    if not isinstance(entry, dict):
        raise AuthConfigError(f"key {number} is not an object")
    kid, kty = entry.get("kid"), entry.get("kty")
    if not isinstance(kid, str) or not kid:
        raise AuthConfigError(f"key {number} has no 'kid'")
    family = _ALGORITHMS_BY_KEY_TYPE.get(kty) if isinstance(kty, str) else None
    if family is None:
        raise AuthConfigError(f"key {kid!r} has an unsupported key type {kty!r}")
    declared = entry.get("alg")
    algorithms = family if declared is None else family & {declared}
    if not algorithms:
        raise AuthConfigError(f"key {kid!r} declares alg {declared!r}, which does not fit its type")
    if kty != "oct" and "d" in entry:
        raise AuthConfigError(f"key {kid!r} holds private key material; configure public keys only")
    try:
        jwk = jwt.PyJWK(entry)
    except jwt.PyJWTError as exc:
        raise AuthConfigError(f"key {kid!r} is not usable: {type(exc).__name__}") from None
    if kty == "oct" and len(jwk.key) < min_hmac_key_bytes:
        raise AuthConfigError(
            f"HMAC key {kid!r} is {len(jwk.key)} bytes; at least {min_hmac_key_bytes} are required")
    return VerificationKey(kid, jwk.key, frozenset(algorithms))


def load_jwks_file(path: Path, *, min_hmac_key_bytes: int = 32) -> tuple[VerificationKey, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"cannot read the key set {path}: {exc.strerror}") from exc
    return load_jwks(text, min_hmac_key_bytes=min_hmac_key_bytes)


def _unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", reason,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Authenticator:
    """Turns a bearer token into a Principal, or refuses it with a 401."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._keys = {k.kid: k for k in config.keys}
        self._accepted = frozenset(config.algorithms)

    def authenticate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._accepted:
            raise _unauthorized(f"the token's algorithm {str(algorithm)[:20]!r} is not accepted")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _unauthorized("the token's key id is not a configured key")
        if algorithm not in key.algorithms:
            raise _unauthorized("the token's algorithm does not match its key's type")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[algorithm], audience=self.config.audience,
                issuer=self.config.issuer, leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("the token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("the token is not from the accepted issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise _unauthorized("the token is not valid") from None
        return Principal(str(claims["sub"]), frozenset(_scopes(claims)))


def _scopes(claims: Mapping[str, Any]) -> Iterable[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    listed = claims.get("scp")
    if isinstance(listed, list):
        return [s for s in listed if isinstance(s, str)]
    return ()


def principal_for(state: Any, token: str | None, scope: str) -> Principal:
    """Who a token acts as, refused (ApiError 401 or 403) unless it holds scope.

    state is the application's: its authenticator decides; with authentication
    off every caller is ANONYMOUS, holding every scope.
    """
    authenticator: Authenticator = state.authenticator
    if not authenticator.config.required:
        found = ANONYMOUS
    elif token is None:
        raise _unauthorized("a bearer token is required")
    else:
        found = authenticator.authenticate(token)
    if scope not in found.scopes:
        raise ApiError(403, "insufficient_scope", f"the token does not grant the {scope!r} scope",
                       details={"required_scope": scope},
                       headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", '
                                                    f'scope="{scope}"'})
    return found


def check_policy(state: Any, policy_input: dict[str, Any]) -> None:
    """Refuses (ApiError 403) what the application's policy denies; no policy allows."""
    authorizer: PolicyAuthorizer | None = state.authorizer
    if authorizer is None:
        return
    decision = authorizer.decide(policy_input)
    if not decision.allow:
        raise ApiError(403, "forbidden_by_policy",
                       "; ".join(decision.reasons) or "the authorization policy denies this",
                       details={"reasons": list(decision.reasons), "policy_digest": authorizer.digest})


def requires(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A route dependency: the request's Principal, refused unless it holds scope and,
    when a policy is configured, the policy allows the request."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        found = principal_for(request.app.state,
                              credentials.credentials if credentials else None, scope)
        check_policy(request.app.state, await _policy_input(request, found))
        return found

    return principal


def policy_input(state: Any, principal: Principal, action: str, *, stream: str | None = None,
                 task: str | None = None) -> dict[str, Any]:
    """The input a policy decides on: who, with which scopes, doing what, where."""
    return {"subject": principal.subject, "scopes": sorted(principal.scopes),
            "ledger": state.ledger_id, "stream": stream, "task": task, "action": action}


async def _policy_input(request: Request, principal: Principal) -> dict[str, Any]:
    task = None
    if request.method == "POST" and await request.body():
        body = await request.json()
        task = body.get("task_id") if isinstance(body, dict) else None
    return policy_input(request.app.state, principal,
                        getattr(request.scope.get("route"), "name", "unknown"),
                        stream=request.path_params.get("stream_id"),
                        task=task if isinstance(task, str) else None)
