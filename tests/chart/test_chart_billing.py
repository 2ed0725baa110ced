"""The chart's Stripe exporter: a CronJob of `photocraft-usage-export --once`, off by default, its key from
the operator's Secret only, valid Kubernetes, and the schema's refusals."""

from __future__ import annotations

import kubernetes_validate
import pytest

from .helm import CHART, PRODUCTION, env, find, helm, render, value_args

KUBERNETES = "1.33.0"
ENABLED = {"billing.export.enabled": "true", "billing.export.stripe.existingSecret": "photocraft-stripe"}


def export_job(sets: dict[str, str]) -> dict:
    [cronjob] = find(render(PRODUCTION, sets), "CronJob", "-usage-export")
    return cronjob


def test_the_exporter_is_off_by_default():
    assert not find(render(PRODUCTION), "CronJob")


def test_the_exporter_runs_once_per_schedule_with_the_stripe_key_from_the_secret():
    cronjob = export_job({**ENABLED, "billing.export.schedule": "*/5 * * * *", "billing.export.batchSize": "50",
                          "billing.export.meterEventName": "acme_units"})
    kubernetes_validate.validate(cronjob, KUBERNETES, strict=True)
    spec = cronjob["spec"]
    assert spec["schedule"] == "*/5 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["command"] == ["photocraft-usage-export", "--once"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
    variables = env(container)
    assert variables["PHOTOCRAFT_STRIPE__API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "photocraft-stripe", "key": "api-key"}
    assert variables["PHOTOCRAFT_STRIPE__METER_EVENT_NAME"]["value"] == "acme_units"
    assert variables["PHOTOCRAFT_STRIPE__BATCH_SIZE"]["value"] == "50"
    assert "PHOTOCRAFT_STRIPE__API_BASE" not in variables  # Stripe itself: production refuses another base
    # the services' own settings: the database (the ledger) and the production profile
    assert "secretKeyRef" in variables["PHOTOCRAFT_DATABASE__URL"]["valueFrom"]
    assert variables["PHOTOCRAFT_PROFILE"]["value"] == "production"


@pytest.mark.parametrize("values, message", [
    ({"billing.export.enabled": "true"}, "/billing/export/stripe/existingSecret"),
    ({**ENABLED, "billing.export.schedule": "every 15 minutes"}, "/billing/export/schedule"),
    ({**ENABLED, "billing.export.batchSize": "0"}, "/billing/export/batchSize"),
    ({**ENABLED, "billing.export.meterEventName": ""}, "/billing/export/meterEventName"),
    ({**ENABLED, "billing.export.stripe.apiKey": "sk_live_inline"}, "apiKey"),  # no inline keys
])
def test_the_schema_rejects_bad_billing_values(values, message):
    result = helm("template", "pc", str(CHART), *value_args(PRODUCTION, values), check=False)
    assert result.returncode != 0, f"accepted {values}"
    assert message in result.stdout + result.stderr
