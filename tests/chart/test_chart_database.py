"""PostgreSQL in the chart: every workload (services and hook Jobs) reads PHOTOCRAFT_DATABASE__URL from
the operator's Secret (database.existingSecret) or, given database.url, from the chart's own Secret;
without either the chart refuses to render."""

from __future__ import annotations

from .helm import CHART, LOCAL, PRODUCTION, containers, env, find, helm, render, value_args

URL = "postgresql://photocraft:pw@postgres.db.svc:5432/photocraft"


def database_refs(manifests: list[dict]) -> dict[str, dict]:
    """Each workload's (Deployment or Job, not Triton's container) PHOTOCRAFT_DATABASE__URL secretKeyRef."""
    return {f"{m['metadata']['name']}/{c['name']}": env(c)["PHOTOCRAFT_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
            for m in find(manifests, "Deployment") + find(manifests, "Job") for c in containers(m)
            if c["name"] != "triton"}


def test_production_reads_the_url_from_the_operators_secret_everywhere():
    manifests = render(PRODUCTION)
    refs = database_refs(manifests)
    assert {"gateway", "scheduler", "notifier"} <= {name.split("/")[1] for name in refs}
    assert set(map(str, refs.values())) == {str({"name": "photocraft-postgres", "key": "url"})}
    assert not find(manifests, "Secret", "-credentials")
    other_key = database_refs(render(PRODUCTION, {"database.urlKey": "uri"}))
    assert {ref["key"] for ref in other_key.values()} == {"uri"}


def test_an_inline_url_goes_into_the_charts_secret():
    manifests = render(PRODUCTION, {"database.existingSecret": "", "database.url": URL})
    [secret] = find(manifests, "Secret", "-credentials")
    assert secret["stringData"] == {"database-url": URL}
    assert set(map(str, database_refs(manifests).values())) == {
        str({"name": secret["metadata"]["name"], "key": "database-url"})}
    local = render(LOCAL)
    [secret] = find(local, "Secret", "-credentials")
    assert secret["stringData"]["database-url"].startswith("postgresql://")


def test_without_a_database_the_chart_refuses():
    result = helm("template", "pc", str(CHART), *value_args(PRODUCTION, {"database.existingSecret": ""}), check=False)
    assert result.returncode != 0 and "database.url or database.existingSecret is required" in result.stderr
    wrong = helm("template", "pc", str(CHART), *value_args(PRODUCTION, {"database.url": "mysql://x/y"}), check=False)
    assert wrong.returncode != 0 and "/database/url" in wrong.stderr
