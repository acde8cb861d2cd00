"""Property-based requests from the OpenAPI spec (schemathesis strategies driven by hypothesis): whatever a
client sends to any operation, never a 5xx. (Driven by hand: schemathesis' pytest plugin does not run on
pytest 9 yet.)"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 15


def test_no_server_errors(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    calls = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=server.url, timeout=60)
            calls.append((operation.label, response.status_code))
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} " \
                                               f"{response.text[:500]}"
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message"}

        check()
    assert {label for label, _ in calls} == {operation.label for operation in operations}
    import requests

    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
