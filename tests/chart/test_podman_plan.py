"""How tests/deploy/kube.py orders the chart's manifests for podman, as a Helm install would."""

import pytest

from tests.deploy.kube import job_as_pod, plan

from .helm import LOCAL, render


def test_hooks_run_first_by_weight_and_jobs_become_pods_that_run_once():
    steps = plan(render(LOCAL))
    kinds = [(m["kind"], m["metadata"]["name"].removeprefix("pc-photocraft-")) for m in steps.hooks]
    assert kinds == [("Pod", "bootstrap"), ("Pod", "publish-models")]
    assert [m["metadata"]["name"] for m in steps.config_maps] == ["pc-photocraft-model-config"]
    for pod in steps.hooks:
        assert pod["spec"]["restartPolicy"] == "Never"
    assert {m["kind"] for m in steps.workloads} == {"Deployment"}
    assert {name.split("/")[0] for name in steps.left_out} == {
        "Secret", "Service", "ServiceAccount", "PodDisruptionBudget"}


def test_secret_references_get_the_secrets_values_for_podman():
    manifests = render(LOCAL)
    steps = plan(manifests)
    for manifest in steps.workloads + steps.hooks:
        spec = manifest["spec"]["template"]["spec"] if manifest["kind"] == "Deployment" else manifest["spec"]
        for container in spec["containers"]:
            assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    gateway = next(m for m in steps.workloads if m["metadata"]["name"].endswith("-gateway"))
    variables = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert variables["PHOTOCRAFT_S3__ACCESS_KEY_ID"] == "placeholder-access-key-id"  # local-s3-placeholders.yaml
    broken = [m for m in manifests if m["kind"] != "Secret"]
    with pytest.raises(KeyError):
        plan(broken)


def test_a_job_as_pod_keeps_its_containers_and_labels():
    job = {"metadata": {"name": "j"}, "spec": {"template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}], "restartPolicy": "OnFailure"}}}}
    pod = job_as_pod(job)
    assert pod["kind"] == "Pod" and pod["metadata"] == {"name": "j", "labels": {"a": "b"}}
    assert pod["spec"]["containers"] == [{"name": "c"}] and pod["spec"]["restartPolicy"] == "Never"


def test_pods_get_their_own_scratch_volumes_and_podmans_shared_memory():
    steps = plan(render(LOCAL))
    worker = next(m for m in steps.workloads if m["metadata"]["name"].endswith("-gpu-inference"))
    pod = worker["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"pc-photocraft-gpu-inference-tmp"}
    for container in pod["containers"]:
        assert "ports" not in container
        assert "/dev/shm" not in {m["mountPath"] for m in container["volumeMounts"]}
        assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"} == {
            "pc-photocraft-gpu-inference-tmp"}
