"""The live gateway against its own OpenAPI schema, with schemathesis: generated requests, valid and
invalid ones, to every operation, each answer checked by not_a_server_error, status_code_conformance,
content_type_conformance and response_schema_conformance.

Bounded: MAX_EXAMPLES generated cases per operation and kind, derandomized, without shrinking or an
example database, one request at a time (a few minutes on two cores). Requests carry an enterprise
tenant's API key, so that the answers are the API's own rather than only the anonymous daily quota.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .helpers import GATEWAY, tenant_key

MAX_EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = ["POST /v1/jobs", "GET /v1/jobs/{job_id}", "DELETE /v1/jobs/{job_id}", "POST /v1/batches",
              "GET /v1/batches/{batch_id}", "DELETE /v1/batches/{batch_id}", "GET /v1/usage", "GET /v1/models",
              "GET /healthz", "GET /readyz"]


@pytest.fixture(scope="module")
def schema():
    return schemathesis.openapi.from_url(f"{GATEWAY}/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def key_header() -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant_key('schemathesis', 'enterprise')}"}


def test_the_operations_here_are_all_the_schema_has(schema):
    assert sorted(op.ok().label for op in schema.get_all_operations()) == sorted(OPERATIONS)


# Invalid requests for every operation that has something to get wrong (the health probes and the model list
# take nothing).
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in OPERATIONS
    if label.split()[1].startswith("/v1/") and label != "GET /v1/models"]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_every_answer_conforms_to_the_schema(schema, key_header, label, mode):
    operation = schema.find_operation_by_label(label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def conforms(case) -> None:
        case.call_and_validate(headers=key_header, checks=CHECKS, timeout=60)

    conforms()
