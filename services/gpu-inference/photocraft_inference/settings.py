import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from photocraft_common.operations import MODELS
from photocraft_common.settings import PlatformSettings

# models/registry.toml of this checkout; containers set PHOTOCRAFT_MODEL_REGISTRY.
DEFAULT_REGISTRY = Path(__file__).resolve().parents[3] / "models" / "registry.toml"


class TritonInstance(BaseModel):
    grpc: str  # host:port of its gRPC endpoint
    metrics: str = ""  # its Prometheus endpoint; it tells the GPU memory, if any


class TritonSettings(BaseModel):
    instances: list[TritonInstance] = [TritonInstance(grpc="127.0.0.1:8001", metrics="http://127.0.0.1:8002/metrics")]
    # Seconds one inference request may take before it is abandoned and retried.
    infer_timeout_s: float = 120.0
    health_interval_s: float = 2.0
    # Seconds a request keeps trying other instances while they fail.
    failover_for_s: float = 120.0


class ResidencySettings(BaseModel):
    # What the budget counts. "cpu": each model's memory_bytes (host memory of its Triton stub).
    # "gpu" (GPU nodes): the gpu_memory_bytes of each model that runs on the GPU (registry gpu =
    # true); a model that stays on the node's CPU counts 0. See models/registry.toml.
    device: Literal["cpu", "gpu"] = "cpu"
    # Memory for models per Triton instance, bytes. Unset: cpu_budget_bytes on "cpu"; on "gpu",
    # 90 % of the GPU memory Triton reports on its metrics endpoint (none reported: an error).
    budget_bytes: int | None = Field(default=None, gt=0)
    cpu_budget_bytes: int = Field(default=6 * 2**30, gt=0)
    default_footprint_bytes: int = 2**30  # for a model the registry has not measured (cpu)
    # On "gpu", for a GPU model whose gpu_memory_bytes is 0 (unmeasured): more than any model
    # here should take (SD-Turbo in fp16 with a 1 MP image is the largest), so none is under-counted.
    unmeasured_gpu_footprint_bytes: int = Field(default=6 * 2**30, gt=0)
    pinned: list[str] = []  # loaded at start, never unloaded
    idle_ttl_s: float = 600.0  # a lazily loaded model is unloaded after this long unused
    sweep_interval_s: float = 15.0


class InferenceSettings(PlatformSettings):
    triton: TritonSettings = TritonSettings()
    residency: ResidencySettings = ResidencySettings()
    model_registry: Path = DEFAULT_REGISTRY
    # The licences (registry licence_id) of non-commercial models this installation accepts, and so serves;
    # comma-separated, e.g. PHOTOCRAFT_ACCEPT_MODEL_LICENCES=LicenseRef-sai-nc-community (SD-Turbo). Empty (the
    # default): no model whose licence forbids commercial use is loaded or advertised (docs/models.md).
    accept_model_licences: Annotated[list[str], NoDecode] = []
    # The Triton models whose topics this worker consumes.
    models: list[str] = list(MODELS)
    # Tasks a consumer takes at once and runs concurrently (their requests fill Triton's batches).
    batch_size: int = 4
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Seconds between two reports of what Triton's model repository holds.
    availability_interval_s: float = 5.0
    metrics_port: int = 0  # Prometheus /metrics; 0: off
    metrics_host: str = "127.0.0.1"

    @field_validator("accept_model_licences", mode="before")
    @classmethod
    def _licence_ids(cls, value: str | list[str]) -> list[str]:
        """A comma-separated list (``a,b``) or a list; blank entries dropped."""
        entries = value.split(",") if isinstance(value, str) else value
        return [str(e).strip() for e in entries if str(e).strip()]
