"""The chart's abuse-limit values: trusted proxies for gateway and notifier (none unless given), the
gateway's rate limits and the notifier's connection limits (the services' defaults unless given)."""

from __future__ import annotations

import pytest

from .helm import CHART, PRODUCTION, containers, env, find, helm, render, value_args

VARIABLES = ("PHOTOCRAFT_TRUSTED_PROXIES", "PHOTOCRAFT_RATE_LIMIT_PER_IP", "PHOTOCRAFT_RATE_LIMIT_PER_KEY",
             "PHOTOCRAFT_CONNECTIONS_PER_IP", "PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL")


def limits(sets: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """component -> the limit variables its container is given."""
    manifests = render(PRODUCTION, sets)
    found = {}
    for component in ("gateway", "notifier", "scheduler"):
        variables = env(containers(find(manifests, "Deployment", f"-{component}")[0])[0])
        found[component] = {name: variables[name]["value"] for name in VARIABLES if name in variables}
    return found


def test_by_default_no_proxy_is_trusted_and_the_services_defaults_apply():
    assert limits() == {"gateway": {"PHOTOCRAFT_TRUSTED_PROXIES": ""},
                        "notifier": {"PHOTOCRAFT_TRUSTED_PROXIES": ""}, "scheduler": {}}


def test_given_values_reach_gateway_and_notifier():
    found = limits({"trustedProxies": "{10.244.0.0/16,192.0.2.7}", "gateway.rateLimits.perIp": "5/second",
                    "gateway.rateLimits.perKey": "9/minute", "notifier.connectionLimits.perIp": "30",
                    "notifier.connectionLimits.perCredential": "7"})
    assert found["gateway"] == {"PHOTOCRAFT_TRUSTED_PROXIES": "10.244.0.0/16,192.0.2.7",
                                "PHOTOCRAFT_RATE_LIMIT_PER_IP": "5/second", "PHOTOCRAFT_RATE_LIMIT_PER_KEY": "9/minute"}
    assert found["notifier"] == {"PHOTOCRAFT_TRUSTED_PROXIES": "10.244.0.0/16,192.0.2.7",
                                 "PHOTOCRAFT_CONNECTIONS_PER_IP": "30", "PHOTOCRAFT_CONNECTIONS_PER_CREDENTIAL": "7"}


@pytest.mark.parametrize("values, message", [
    ({"trustedProxies": "{*}"}, "/trustedProxies/0"),
    ({"notifier.connectionLimits.perIp": "-1"}, "/notifier/connectionLimits/perIp"),
    ({"gateway.rateLimits.perAddress": "1/second"}, "perAddress"),
])
def test_the_schema_rejects_bad_limits(values, message):
    result = helm("template", "pc", str(CHART), *value_args(PRODUCTION, values), check=False)
    assert result.returncode != 0, f"template accepted {values}"
    assert message in result.stdout + result.stderr
