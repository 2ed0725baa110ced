"""Running the chart's rendered manifests on one machine with ``podman kube play``.

There is no Kubernetes cluster here, so this does what `helm install` and the
cluster would do, in the same order: the pre-install hooks by weight (a Secret
and a ConfigMap, then each Job as a Pod that must exit 0), then the
workloads. Kinds that podman does not run (Service, Ingress, NetworkPolicy,
PodDisruptionBudget, HorizontalPodAutoscaler, ServiceAccount, KEDA's objects)
are left out: tests/chart validates them.

podman 4.3 (Debian 12's) cannot read a Kubernetes Secret it made itself into
an environment variable ("secret ... is not valid JSON", fixed in later
podman), so the Secrets' values are written into the env entries that refer to
them, and the Secrets themselves are not played. It also refuses container
ports on the host network ("PortMappings can only be used with Bridge or
slirp4netns networking"): on the host network they only name what the
processes listen on anyway, so they are dropped.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# What `podman kube play` (4.3) runs; everything else the chart renders is left out.
PLAYABLE = {"Deployment", "Pod"}


@dataclass
class Plan:
    """The rendered manifests in the order a Helm install applies them."""

    hooks: list[dict] = field(default_factory=list)  # by weight; Jobs already made Pods
    workloads: list[dict] = field(default_factory=list)
    config_maps: list[dict] = field(default_factory=list)  # handed to every play (podman plays no lone ConfigMap)
    left_out: list[str] = field(default_factory=list)  # "Kind/name"


def hook_weight(manifest: dict) -> int | None:
    """The manifest's Helm hook weight, or None when it is not a pre-install hook."""
    annotations = manifest["metadata"].get("annotations") or {}
    if "pre-install" not in annotations.get("helm.sh/hook", ""):
        return None
    return int(annotations.get("helm.sh/hook-weight", "0"))


def job_as_pod(job: dict) -> dict:
    """A Job's pod template as a Pod that runs once (podman 4.3 does not run Jobs)."""
    template = job["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": job["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
            "spec": {**template["spec"], "restartPolicy": "Never"}}


def secret_values(manifests: list[dict]) -> dict[tuple[str, str], str]:
    """(Secret name, key) -> value, for every Secret among ``manifests``."""
    values = {}
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        name = secret["metadata"]["name"]
        values.update({(name, k): base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
        values.update({(name, k): str(v) for k, v in (secret.get("stringData") or {}).items()})
    return values


def inline_secrets(manifest: dict, values: dict[tuple[str, str], str]) -> dict:
    """``manifest`` with every env entry that reads a Secret of ``values`` given that value instead.

    Raises KeyError for a reference to a Secret or key that is not there (as the kubelet would refuse the pod).
    """
    manifest = copy.deepcopy(manifest)
    pod = manifest["spec"]["template"]["spec"] if "template" in manifest["spec"] else manifest["spec"]
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                entry.pop("valueFrom")
                entry["value"] = values[(ref["name"], ref["key"])]
    return manifest


def without_ports(manifest: dict) -> dict:
    """``manifest`` without its containers' ``ports`` (host network only)."""
    manifest = copy.deepcopy(manifest)
    pod = manifest["spec"]["template"]["spec"] if "template" in manifest["spec"] else manifest["spec"]
    assert pod.get("hostNetwork"), "container ports are dropped for host-network pods only"
    for container in pod.get("containers", []):
        container.pop("ports", None)
    return manifest


def plan(manifests: list[dict]) -> Plan:
    result = Plan()
    hooks: list[tuple[int, dict]] = []
    secrets = secret_values(manifests)
    for manifest in manifests:
        kind = manifest["kind"]
        weight = hook_weight(manifest)
        runnable = job_as_pod(manifest) if kind == "Job" else manifest
        if kind in ("Job", "Deployment", "Pod"):
            runnable = without_ports(inline_secrets(runnable, secrets))
        if kind == "ConfigMap":
            result.config_maps.append(manifest)
        elif kind != "Job" and kind not in PLAYABLE:
            result.left_out.append(f"{kind}/{manifest['metadata']['name']}")
        elif weight is not None:
            hooks.append((weight, runnable))
        else:
            result.workloads.append(runnable)
    result.hooks = [m for _, m in sorted(hooks, key=lambda pair: pair[0])]
    return result


class Podman:
    """``podman kube play`` of manifest files kept in ``workdir``, and their teardown."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env, self.played = workdir, env, []
        self.config_maps: Path | None = None

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run podman; raises RuntimeError with its output when ``check`` and it fails."""
        result = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def use_config_maps(self, config_maps: list[dict]) -> None:
        """ConfigMaps that the pods played from now on may mount or read."""
        self.config_maps = self.workdir / "configmaps.yaml"
        self.config_maps.write_text(yaml.safe_dump_all(config_maps, sort_keys=False))

    def play(self, name: str, manifests: list[dict]) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
        self.played.append(path)
        self.run("kube", "play", *(["--configmap", str(self.config_maps)] if self.config_maps else []), str(path))
        return path

    def containers(self, pod: str) -> list[dict]:
        """The containers of pods whose name starts with ``pod`` (infra containers left out)."""
        found = json.loads(self.run("ps", "-a", "--pod", "--format", "json").stdout or "[]")
        return [c for c in found if (c.get("PodName") or "").startswith(pod) and not c.get("IsInfra")]

    def wait_for_exit(self, container: str, timeout: float) -> int:
        return int(self.run("wait", container, timeout=timeout).stdout.strip().splitlines()[-1])

    def logs(self, container: str, tail: int = 60) -> str:
        result = self.run("logs", "--tail", str(tail), container, check=False)
        return result.stdout + result.stderr

    def down(self) -> None:
        for path in reversed(self.played):
            self.run("kube", "play", "--down", str(path), check=False, timeout=120)
        self.played.clear()
