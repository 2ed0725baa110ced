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
them, and the Secrets themselves are not played. It also differs from a
kubelet in three ways the pods are adapted to (``for_podman``):
- it refuses container ports on the host network ("PortMappings can only be
  used with Bridge or slirp4netns networking"); there they only name what the
  processes listen on, so they are dropped;
- it makes each emptyDir a volume named as the volume, shared by every pod
  that uses the name and kept after the pod: each gets its pod's name, and
  ``Podman.down`` removes them;
- an emptyDir at /dev/shm becomes a root-owned folder that the non-root user
  cannot write, while every podman pod has its own /dev/shm tmpfs already
  (sized by shm_size in infra/images/containers.conf): that mount is dropped.
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


def for_podman(manifest: dict) -> dict:
    """``manifest`` (a host-network Deployment or Pod) adapted to podman 4.3: see the module's docstring."""
    manifest = copy.deepcopy(manifest)
    pod = manifest["spec"]["template"]["spec"] if "template" in manifest["spec"] else manifest["spec"]
    assert pod.get("hostNetwork"), "only host-network pods run here"
    prefix = manifest["metadata"]["name"]
    shm = {v["name"] for v in pod.get("volumes", []) if (v.get("emptyDir") or {}).get("medium") == "Memory"}
    renamed = {v["name"]: f"{prefix}-{v['name']}" for v in pod.get("volumes", []) if "emptyDir" in v}
    pod["volumes"] = [{**v, "name": renamed.get(v["name"], v["name"])} for v in pod.get("volumes", [])
                      if v["name"] not in shm]
    for container in pod.get("containers", []):
        container.pop("ports", None)
        container["volumeMounts"] = [{**m, "name": renamed.get(m["name"], m["name"])}
                                     for m in container.get("volumeMounts", [])
                                     if not (m["name"] in shm and m["mountPath"] == "/dev/shm")]
    return manifest


def empty_dirs(manifest: dict) -> list[str]:
    """The names of the emptyDir volumes of a manifest made by ``for_podman``."""
    pod = manifest["spec"]["template"]["spec"] if "template" in manifest["spec"] else manifest["spec"]
    return [v["name"] for v in pod.get("volumes", []) if "emptyDir" in v]


def plan(manifests: list[dict]) -> Plan:
    result = Plan()
    hooks: list[tuple[int, dict]] = []
    secrets = secret_values(manifests)
    for manifest in manifests:
        kind = manifest["kind"]
        weight = hook_weight(manifest)
        runnable = job_as_pod(manifest) if kind == "Job" else manifest
        if kind in ("Job", "Deployment", "Pod"):
            runnable = for_podman(inline_secrets(runnable, secrets))
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
        """Remove the pods played, then their emptyDir volumes and ConfigMap volumes."""
        volumes = []
        for path in reversed(self.played):
            for manifest in yaml.safe_load_all(path.read_text()):
                volumes += empty_dirs(manifest)
            self.run("kube", "play", "--down", str(path), check=False, timeout=120)
        if self.config_maps:
            volumes += [m["metadata"]["name"] for m in yaml.safe_load_all(self.config_maps.read_text())]
        if volumes:
            self.run("volume", "rm", *volumes, check=False, timeout=120)
        self.played.clear()
