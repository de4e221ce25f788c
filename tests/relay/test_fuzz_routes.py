"""Schemathesis over the relay's routes in a service configured for them: no 500, every
response as documented, every error in the standard body."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth

from tests.http.test_fuzz import ACCEPTANCE_NOT_CHECKED
from tests.relay.test_webhook_intake import service  # noqa: F401  (the fixture)


def test_the_relay_routes_answer_as_documented(service):  # noqa: F811
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    relay = [op for op in operations if op.path.startswith(("/v1/relay", "/v1/webhooks"))]
    assert len(relay) == 4

    for operation in relay:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def answers_as_documented(case) -> None:
            # The service runs without tokens here (loopback): authentication is
            # tested with the rest of the service's routes.
            response = case.call_and_validate(base_url=service.url,
                                              excluded_checks=[*ACCEPTANCE_NOT_CHECKED,
                                                               ignored_auth])
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}

        answers_as_documented()
