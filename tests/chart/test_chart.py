"""The Helm chart: lint, render, strict validation of every manifest, and what the values mean.

Runs `helm` (var/bin/helm, made by `make`) and kubernetes-validate; needs no cluster.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from photocraft_common.keyring import Keyring

from .helm import CHART, GPU, LOCAL, PRODUCTION, containers, env, find, helm, render, value_args

KUBERNETES = "1.33.0"
# Kinds of CRDs (KEDA) have no schema that kubernetes-validate knows: they are checked field by field below.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
VALUES = {"production": PRODUCTION, "gpu": GPU, "local": LOCAL}
# The default values' ports: public (what the Ingress routes) and Prometheus /metrics.
PUBLIC = {"gateway": 8080, "notifier": 8081}
METRICS = {"gateway": 9430, "notifier": 9440, "scheduler": 9410, "storage-janitor": 9420, "gpu-inference": 9400}


@pytest.mark.parametrize("name", VALUES)
def test_helm_lint_passes_strictly(name):
    result = helm("lint", "--strict", str(CHART), *value_args(VALUES[name]), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUES)
def test_every_rendered_manifest_is_valid_kubernetes(name):
    manifests = render(VALUES[name])
    assert len(manifests) > 10
    for manifest in manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {exc.message}")


def test_a_manifest_that_breaks_the_kubernetes_schema_is_rejected():
    deployment = find(render(PRODUCTION), "Deployment", "-gateway")[0]
    containers(deployment)[0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    containers(deployment)[0]["ports"][0] = {"containerPort": 8080, "portNumber": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize("values, message", [
    ({"triton.device": "tpu"}, "/triton/device"),
    ({"gateway.replicas": "-1"}, "/gateway/replicas"),
    ({"kafka.securityProtocol": "SASL_TLS"}, "/kafka/securityProtocol"),
    ({"kafka.bootstrapServers": "kafka"}, "/kafka/bootstrapServers"),
    ({"redis.url": "http://redis:6379"}, "/redis/url"),
    ({"gpuInference.keda.minReplicaCount": "0"}, "/gpuInference/keda/minReplicaCount"),
    ({"lifetimeSeconds": "172800"}, "/lifetimeSeconds"),
    ({"keyring.key": ""}, "/keyring/key"),
    ({"keyring.secret": "inline-secrets-are-not-taken-here"}, "secret"),
    ({"securityContext.allowPrivilegeEscalation": "true"}, "/securityContext/allowPrivilegeEscalation"),
    ({"gatway.replicas": "3"}, "gatway"),
    ({"gateway.metricsPort": "0"}, "/gateway/metricsPort"),
    ({"tracing.enabled": "true"}, "/tracing/endpoint"),  # on, but no endpoint
    ({"tracing.endpoint": "otel-collector:4318"}, "/tracing/endpoint"),  # no scheme
    ({"tracing.sampleRatio": "1.5"}, "/tracing/sampleRatio"),
    ({"tracing.enabled": "yes"}, "/tracing/enabled"),
    ({"metrics.serviceMonitor.interval": "soon"}, "/metrics/serviceMonitor/interval"),
    ({"metrics.serviceMonitor.enabeld": "true"}, "enabeld"),
    ({"networkPolicy.metricsPodSelector.matchLabel.app": "prometheus"}, "matchLabel"),
])
def test_the_schema_rejects_bad_values(values, message):
    for command in (["template", "pc"], ["lint"]):
        result = helm(*command, str(CHART), *value_args(PRODUCTION, values), check=False)
        assert result.returncode != 0, f"{command[0]} accepted {values}"
        assert message in result.stdout + result.stderr


def test_the_defaults_require_the_external_endpoints():
    result = helm("template", "pc", str(CHART), check=False)
    assert result.returncode != 0
    assert "kafka.bootstrapServers is required" in result.stderr


def test_the_schema_is_json_schema_and_forbids_unknown_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) <= set(schema["properties"])


def test_every_container_runs_as_non_root_on_a_read_only_root_filesystem():
    for manifest in render(GPU):
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]}


def test_readiness_probes_ask_the_services_readyz():
    for deployment in find(render(PRODUCTION), "Deployment"):
        for container in containers(deployment):
            if container["name"] == "triton":  # on the pod's loopback: probed from inside
                assert "127.0.0.1:8000/v2/health/ready" in container["readinessProbe"]["exec"]["command"][-1]
                assert "127.0.0.1:8000/v2/health/live" in container["livenessProbe"]["exec"]["command"][-1]
                continue
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", container["name"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_credentials_come_from_the_existing_secrets_and_tls_cas_are_mounted():
    manifests = render(PRODUCTION)
    assert not find(manifests, "Secret", "-credentials"), "no chart Secret when every credential is an existing one"
    gateway = containers(find(manifests, "Deployment", "-gateway")[0])[0]
    variables = env(gateway)
    assert variables["PHOTOCRAFT_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "photocraft", "key": "password"}
    assert variables["PHOTOCRAFT_S3__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "photocraft-s3"
    assert variables["PHOTOCRAFT_KEYRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "photocraft-keyring", "key": "keyring"}
    assert not find(manifests, "Secret", "-keyring"), "no chart keyring when the operator names one"
    assert variables["PHOTOCRAFT_KAFKA__SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert variables["PHOTOCRAFT_PROFILE"]["value"] == "production"
    mounts = {m["mountPath"] for m in gateway["volumeMounts"]}
    assert {"/etc/photocraft/tls/kafka", "/etc/photocraft/tls/redis", "/etc/photocraft/tls/s3"} <= mounts
    assert variables["PHOTOCRAFT_KAFKA__SSL_CAFILE"]["value"] == "/etc/photocraft/tls/kafka/ca.crt"
    assert variables["PHOTOCRAFT_KAFKA__REPLICATION_FACTOR"]["value"] == "3"


def test_aws_s3_is_named_by_an_empty_endpoint_not_left_to_the_local_default():
    gateway = containers(find(render(PRODUCTION, {"s3.endpointUrl": ""}), "Deployment", "-gateway")[0])[0]
    assert env(gateway)["PHOTOCRAFT_S3__ENDPOINT_URL"]["value"] == ""


def test_a_ca_is_given_only_where_tls_is_on():
    """The services refuse a CA file for a connection without TLS: the chart must not hand them one."""
    manifests = render(PRODUCTION, {"kafka.securityProtocol": "SASL_PLAINTEXT", "redis.url": "redis://redis:6379/0"})
    gateway = containers(find(manifests, "Deployment", "-gateway")[0])[0]
    assert "PHOTOCRAFT_KAFKA__SSL_CAFILE" not in env(gateway) and "PHOTOCRAFT_REDIS__SSL_CA_CERTS" not in env(gateway)
    assert {m["mountPath"] for m in gateway["volumeMounts"]} == {"/tmp", "/etc/photocraft/tls/s3"}


def test_gpu_values_put_triton_on_gpu_nodes_with_gpu_model_configs_and_keda():
    manifests = render(GPU)
    pod = find(manifests, "Deployment", "-gpu-inference")[0]["spec"]["template"]["spec"]
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]

    configs = find(manifests, "ConfigMap", "-model-config")[0]["data"]
    assert "KIND_GPU" in configs["u2netp.pbtxt"] and "KIND_CPU" not in configs["u2netp.pbtxt"]
    assert 'name : "tensorrt"' in configs["u2netp.pbtxt"].replace('name: "tensorrt"', 'name : "tensorrt"')
    publish = find(manifests, "Job", "-publish-models")[0]
    assert containers(publish)[0]["command"][1:5] == ["/opt/photocraft/models/weights.py", "publish", "--device", "gpu"]
    assert "args" not in triton, "GPU metrics stay on"

    scaled = find(manifests, "ScaledObject")[0]["spec"]
    assert scaled["minReplicaCount"] == 1 and scaled["cooldownPeriod"] == 300
    topics = {t["metadata"]["topic"] for t in scaled["triggers"]}
    assert "photocraft.tasks.model.u2netp" in topics and all(t["type"] == "kafka" for t in scaled["triggers"])
    assert "replicas" not in find(manifests, "Deployment", "-gpu-inference")[0]["spec"], "KEDA owns the replicas"
    auth = find(manifests, "TriggerAuthentication")[0]["spec"]["secretTargetRef"]
    assert {a["parameter"] for a in auth} == {"sasl", "tls", "username", "password", "ca"}
    keda_secret = find(manifests, "Secret", "-keda-kafka")[0]["stringData"]
    assert keda_secret["sasl"] == "scram_sha512" and keda_secret["tls"] == "enable"


def test_default_values_ask_for_no_gpu_and_serve_cpu_configs():
    manifests = render(PRODUCTION)
    pod = find(manifests, "Deployment", "-gpu-inference")[0]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    configs = find(manifests, "ConfigMap", "-model-config")[0]["data"]
    assert all("KIND_GPU" not in text for text in configs.values())
    assert not find(manifests, "ScaledObject")


def test_hpas_scale_gateway_and_notifier_on_cpu():
    hpas = {h["spec"]["scaleTargetRef"]["name"].rsplit("-", 1)[-1]: h["spec"] for h in
            find(render(PRODUCTION), "HorizontalPodAutoscaler")}
    assert set(hpas) == {"gateway", "notifier"}
    for spec in hpas.values():
        assert spec["metrics"][0]["resource"]["name"] == "cpu"


def test_network_policies_admit_only_the_ingress_to_gateway_and_notifier():
    manifests = render(PRODUCTION)
    policies = {p["metadata"]["name"].removeprefix("pc-photocraft-"): p["spec"]
                for p in find(manifests, "NetworkPolicy")}
    assert policies["default-deny"]["policyTypes"] == ["Ingress"] and "ingress" not in policies["default-deny"]
    for component in ("gateway", "notifier"):
        source = policies[component]["ingress"][0]["from"][0]
        assert source == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
        assert [p["port"] for p in policies[component]["ingress"][0]["ports"]] == [PUBLIC[component]]
    # Triton's inference ports are never opened: it listens on the pod's loopback.
    metrics = policies["gpu-inference-metrics"]["ingress"][0]["ports"]
    assert {p["port"] for p in metrics} == {9400, 8002}
    triton = next(c for c in containers(find(manifests, "Deployment", "-gpu-inference")[0]) if c["name"] == "triton")
    assert env(triton)["TRITON_ADDRESS"]["value"] == "127.0.0.1"


def test_the_ingress_sends_websockets_to_the_notifier_and_the_api_to_the_gateway():
    ingress = find(render(PRODUCTION), "Ingress")[0]["spec"]
    backends = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["rules"]}
    assert backends == {"photocraft.example.com": "pc-photocraft-gateway",
                        "events.photocraft.example.com": "pc-photocraft-notifier"}
    gateway = containers(find(render(PRODUCTION), "Deployment", "-gateway")[0])[0]
    assert env(gateway)["PHOTOCRAFT_EVENTS_BASE_URL"]["value"] == "wss://events.photocraft.example.com"


def test_hook_jobs_make_topics_bucket_and_model_repository_before_the_services():
    manifests = render(PRODUCTION)
    jobs = {j["metadata"]["name"].removeprefix("pc-photocraft-"): j for j in find(manifests, "Job")}
    assert set(jobs) == {"bootstrap", "publish-models"}
    for job in jobs.values():
        assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    assert containers(jobs["bootstrap"])[0]["command"] == ["photocraft-bootstrap"]
    publish = containers(jobs["publish-models"])[0]["command"]
    assert publish[publish.index("--to") + 1] == "s3://photocraft-models/model-repository"
    triton = next(c for c in containers(find(manifests, "Deployment", "-gpu-inference")[0]) if c["name"] == "triton")
    assert env(triton)["TRITON_MODEL_REPOSITORY"]["value"] == \
        "s3://https://minio.minio.svc:443/photocraft-models/model-repository"


def test_inline_credentials_make_a_hook_secret_that_every_reference_names():
    manifests = render(LOCAL)
    secrets = {s["metadata"]["name"]: s for s in find(manifests, "Secret", "-credentials") + find(
        manifests, "Secret", "-keyring")}
    assert len(secrets) == 2
    for secret in secrets.values():
        assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"
    keys = {(name, key) for name, s in secrets.items() for key in {**s.get("stringData", {}), **s.get("data", {})}}
    for manifest in find(manifests, "Deployment") + find(manifests, "Job"):
        for container in containers(manifest):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in keys, entry


def test_without_an_existing_secret_the_chart_makes_a_random_keyring_every_service_reads():
    """Made at install (helm lookup keeps it on upgrades: that needs a cluster, so here each render is an
    install); nothing of it comes from the chart's source or values."""
    keyrings = []
    for _ in range(2):
        manifests = render(PRODUCTION, {"keyring.existingSecret": ""})
        [secret] = find(manifests, "Secret", "-keyring")
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < min(
            int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for j in find(manifests, "Job"))
        keyring = Keyring.model_validate_json(base64.b64decode(secret["data"]["keyring"]))
        assert len(keyring.secret(keyring.current)) == 48
        keyrings.append(keyring)
        for manifest in find(manifests, "Deployment") + find(manifests, "Job"):
            for container in containers(manifest):
                if container["name"] != "triton":
                    assert env(container)["PHOTOCRAFT_KEYRING"]["valueFrom"]["secretKeyRef"] == {
                        "name": secret["metadata"]["name"], "key": "keyring"}, manifest["metadata"]["name"]
    assert keyrings[0].secret(keyrings[0].current) != keyrings[1].secret(keyrings[1].current)


def test_model_configs_in_the_chart_match_the_model_repository():
    """files/model-config/ is generated by `make model-configs`; a change to models/ must regenerate it."""
    models_python = Path(CHART).parents[1] / ".venv-triton" / "bin" / "python"
    for device in ("cpu", "gpu"):
        committed = {p.name: p.read_text() for p in (CHART / "files" / "model-config" / device).glob("*.pbtxt")}
        out = Path(CHART).parents[1] / "var" / "tmp" / f"model-config-{device}"
        subprocess.run([str(models_python), str(Path(CHART).parents[1] / "models" / "weights.py"), "configs",
                        "--device", device, "--out", str(out)], check=True, capture_output=True, timeout=120)
        generated = {p.name: p.read_text() for p in out.glob("*.pbtxt")}
        assert committed == generated, f"run `make model-configs` ({device})"


def component(manifest: dict) -> str:
    return manifest["metadata"]["labels"]["app.kubernetes.io/component"]


def test_every_service_has_a_metrics_port_the_ingress_never_routes():
    manifests = render(PRODUCTION)
    for deployment in find(manifests, "Deployment"):
        name = component(deployment)
        service = next(c for c in containers(deployment) if c["name"] == name)
        ports = {p["name"]: p["containerPort"] for p in service["ports"]}
        assert ports["metrics"] == METRICS[name], name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(METRICS[name])
        if name in PUBLIC:  # its own listener, apart from the public port
            assert ports["http"] == PUBLIC[name]
            assert env(service)["PHOTOCRAFT_METRICS_PORT"]["value"] == str(METRICS[name])
            assert env(service)["PHOTOCRAFT_METRICS_HOST"]["value"] == "0.0.0.0"
    services = {component(s): {p["name"]: p["port"] for p in s["spec"]["ports"]} for s in find(manifests, "Service")}
    assert {name: ports["metrics"] for name, ports in services.items()} == METRICS
    ingress = find(manifests, "Ingress")[0]["spec"]
    routed = {r["http"]["paths"][0]["backend"]["service"]["port"]["number"] for r in ingress["rules"]}
    assert routed == set(PUBLIC.values())


def test_the_metrics_port_must_differ_from_the_public_one():
    result = helm("template", "pc", str(CHART), *value_args(PRODUCTION, {"notifier.metricsPort": "8081"}), check=False)
    assert result.returncode != 0 and "notifier.metricsPort must differ from notifier.port" in result.stderr


def test_only_the_configured_scrapers_reach_the_metrics_ports():
    selectors = {"networkPolicy.metricsNamespaceSelector.matchLabels.team": "observability",
                 "networkPolicy.metricsPodSelector.matchLabels.app\\.kubernetes\\.io/name": "prometheus"}
    for sets, source in [
        ({}, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}),
        (selectors, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring",
                                                           "team": "observability"}},
                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}),
    ]:
        policies = {component(p): p["spec"] for p in find(render(PRODUCTION, sets), "NetworkPolicy", "-metrics")}
        assert set(policies) == set(METRICS)
        for name, spec in policies.items():
            assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
            [rule] = spec["ingress"]
            assert rule["from"] == [source], name
            expected = {METRICS[name], 8002} if name == "gpu-inference" else {METRICS[name]}
            assert {p["port"] for p in rule["ports"]} == expected


def test_a_service_monitor_scrapes_every_metrics_port_when_asked():
    assert not find(render(PRODUCTION), "ServiceMonitor")
    manifests = render(PRODUCTION, {"metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.interval": "15s",
                                    "metrics.serviceMonitor.labels.release": "kube-prometheus-stack"})
    [monitor] = find(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"},
                                 {"port": "triton-metrics", "path": "/metrics", "interval": "15s"}]
    selected = [s for s in find(manifests, "Service")
                if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert {component(s) for s in selected} == set(METRICS)
    assert {p["name"] for s in selected for p in s["spec"]["ports"]} >= {"metrics", "triton-metrics"}


def test_scrape_annotations_can_be_left_out_and_pod_annotations_stay():
    manifests = render(PRODUCTION, {"metrics.podAnnotations": "false", "podAnnotations.team": "photos"})
    for deployment in find(manifests, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["team"] == "photos"
        assert not [key for key in annotations if key.startswith("prometheus.io/")]
    plain = render(PRODUCTION, {"metrics.podAnnotations": "false"})
    assert "annotations" not in find(plain, "Deployment", "-scheduler")[0]["spec"]["template"]["metadata"]


def test_tracing_values_become_every_services_tracing_settings():
    def tracing(manifests: list[dict]) -> list[dict]:
        return [{k: v["value"] for k, v in env(c).items() if k.startswith("PHOTOCRAFT_TRACING__")}
                for m in find(manifests, "Deployment") for c in containers(m) if c["name"] != "triton"]

    off = tracing(render(PRODUCTION))
    assert len(off) == 5
    assert all(t == {"PHOTOCRAFT_TRACING__ENABLED": "false", "PHOTOCRAFT_TRACING__ENDPOINT": "",
                     "PHOTOCRAFT_TRACING__SAMPLE_RATIO": "1"} for t in off), off
    on = tracing(render(PRODUCTION, {"tracing.enabled": "true", "tracing.sampleRatio": "0.25",
                                     "tracing.endpoint": "http://otel-collector.observability:4318"}))
    assert all(t == {"PHOTOCRAFT_TRACING__ENABLED": "true",
                     "PHOTOCRAFT_TRACING__ENDPOINT": "http://otel-collector.observability:4318",
                     "PHOTOCRAFT_TRACING__SAMPLE_RATIO": "0.25"} for t in on), on
