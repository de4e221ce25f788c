"""Authentication fails closed: every kind of bad token is a 401 that names the failed check
and leaks no key material; a missing scope is a 403."""

from __future__ import annotations

import base64
import json
import time

import pytest

from canonlog.infrastructure.http import ServiceConfig
from canonlog.infrastructure.http.auth import AuthConfig, AuthConfigError, load_jwks
from tests.http.conftest import AUDIENCE, ISSUER, Tokens
from tests.http.test_errors import assert_standard_error


def refusals(tokens: Tokens) -> list[tuple[str, str, str]]:
    """(what, token, words the refusal names) for every kind of token that must be refused."""
    now = int(time.time())
    return [
        ("malformed", "not-a-jwt", "well-formed"),
        ("expired", tokens.rsa(exp=now - 120, iat=now - 600), "expired"),
        ("wrong audience", tokens.rsa(aud="someone-else"), "audience"),
        ("wrong issuer", tokens.rsa(iss="https://evil.test"), "issuer"),
        ("no exp", tokens.rsa(exp=None), "'exp'"),
        ("no aud", tokens.rsa(aud=None), "'aud'"),
        ("no iss", tokens.rsa(iss=None), "'iss'"),
        ("not valid yet", tokens.rsa(nbf=now + 3600), "not valid yet"),
        ("bad signature", tokens.rsa(key=tokens.other_rsa_key), "signature"),
        ("alg none", tokens.handmade({"alg": "none", "kid": "rsa-1", "typ": "JWT"}, None),
         "algorithm"),
        ("alg None", tokens.handmade({"alg": "None", "kid": "rsa-1"}, None), "algorithm"),
        ("HS256 signed with the RSA public key",
         tokens.handmade({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, tokens.rsa_public_pem),
         "does not match"),
        ("RS-only algorithm on the HMAC key", tokens.rsa(kid="hmac-1"), "does not match"),
        ("unknown kid", tokens.rsa(kid="rsa-2"), "key id"),
        ("no kid", tokens.handmade({"alg": "HS256"}, tokens.hmac_secret), "key id"),
        ("jku pointing elsewhere", tokens.rsa(kid="attacker", key=tokens.other_rsa_key,
                                              headers={"jku": "http://127.0.0.1:9/jwks.json"}),
         "key id"),
        ("algorithm not configured", tokens.handmade({"alg": "HS512", "kid": "hmac-1"},
                                                     tokens.hmac_secret), "not accepted"),
    ]


async def test_every_bad_token_is_a_401_naming_the_check_and_no_key(shared, tokens):
    secret_b64 = base64.urlsafe_b64encode(tokens.hmac_secret).rstrip(b"=").decode()
    public_numbers = str(tokens.rsa_key.public_key().public_numbers().n)
    async with shared.client() as client:
        for what, token, named in refusals(tokens):
            response = await client.get("/v1/head", headers={"Authorization": f"Bearer {token}"})
            error = assert_standard_error(response, 401, "unauthorized")
            assert named in error["message"], (what, error)
            assert response.headers["www-authenticate"].startswith("Bearer")
            for secret in (secret_b64, tokens.hmac_secret.decode(), "BEGIN", public_numbers[:40]):
                assert secret not in response.text, what


async def test_a_request_without_a_bearer_token_is_a_401(shared):
    async with shared.client() as client:
        missing = await client.get("/v1/head")
        basic = await client.get("/v1/head", headers={"Authorization": "Basic YWxpY2U6cHc="})
    for response in (missing, basic):
        assert "bearer token" in assert_standard_error(response, 401, "unauthorized")["message"]


async def test_good_tokens_of_either_configured_key_are_accepted(shared, tokens):
    async with shared.client() as client:
        for token in (tokens.rsa("read"), tokens.hs256("read")):
            response = await client.get("/v1/head", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "body", "scope"), [
    ("POST", "/v1/streams/s/events", {"events": [{"type": "x", "payload": {}}]}, "append"),
    ("POST", "/v1/halt", {"reason": "test"}, "operate"),
    ("POST", "/v1/verifications", None, "operate"),
    ("GET", "/v1/events", None, "read"),
])
async def test_a_token_without_the_routes_scope_is_a_403(shared, tokens, method, path, body, scope):
    others = " ".join(s for s in ("read", "append", "operate") if s != scope)
    async with shared.client(headers=tokens.bearer(others)) as client:
        response = await client.request(method, path, json=body)
        error = assert_standard_error(response, 403, "insufficient_scope")
        assert error["details"] == {"required_scope": scope}
        state = (await client.get("/v1/state", headers=tokens.bearer("read"))).json()
    assert state["halted"] is False


async def test_health_and_metrics_need_no_token(shared):
    async with shared.client() as client:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


def _jwks(*keys: dict) -> str:
    return json.dumps({"keys": list(keys)})


def test_a_short_hmac_key_is_refused_at_configuration():
    short = base64.urlsafe_b64encode(b"x" * 31).rstrip(b"=").decode()
    with pytest.raises(AuthConfigError, match="31 bytes; at least 32"):
        load_jwks(_jwks({"kty": "oct", "k": short, "kid": "h"}))


def test_private_key_material_and_keys_without_kid_are_refused_at_configuration(tokens):
    import jwt

    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(tokens.rsa_key))
    with pytest.raises(AuthConfigError, match="private key material"):
        load_jwks(_jwks({**private, "kid": "r"}))
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(tokens.rsa_key.public_key()))
    with pytest.raises(AuthConfigError, match="no 'kid'"):
        load_jwks(_jwks(public))
    with pytest.raises(AuthConfigError, match="does not fit"):
        load_jwks(_jwks({**public, "kid": "r", "alg": "HS256"}))


def test_authentication_cannot_be_off_beyond_loopback_nor_accept_alg_none(jwks_file):
    off = AuthConfig(required=False)
    assert ServiceConfig(host="127.0.0.1", auth=off).auth.required is False
    assert ServiceConfig(host="::1", auth=off)
    with pytest.raises(AuthConfigError, match="loopback"):
        ServiceConfig(host="0.0.0.0", auth=off)
    with pytest.raises(AuthConfigError, match="none"):
        AuthConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=("none",),
                   keys=load_jwks(jwks_file.read_text()))
    with pytest.raises(AuthConfigError, match="issuer and an audience"):
        AuthConfig(keys=load_jwks(jwks_file.read_text()))


def test_the_service_configuration_from_settings_fails_closed(jwks_file, tmp_path):
    from canonlog.infrastructure.bootstrap import service_config
    from canonlog.infrastructure.settings import Settings

    base = {"data_dir": tmp_path}
    with pytest.raises(AuthConfigError, match="CANONLOG_JWKS_FILE"):
        service_config(Settings(**base))
    with pytest.raises(AuthConfigError, match="issuer and an audience"):
        service_config(Settings(**base, jwks_file=jwks_file))
    with pytest.raises(AuthConfigError, match="loopback"):
        service_config(Settings(**base, auth_required=False, http_host="0.0.0.0"))
    config = service_config(Settings(**base, jwks_file=jwks_file, jwt_issuer=ISSUER,
                                     jwt_audience=AUDIENCE, jwt_algorithms="RS256, HS256"))
    assert config.auth.algorithms == ("RS256", "HS256")
    assert {k.kid for k in config.auth.keys} == {"rsa-1", "hmac-1"}
    assert config.checkpoints is None
    assert service_config(Settings(**base, auth_required=False)).auth.required is False
