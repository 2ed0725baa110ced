import os
import socket

from pydantic import Field

from photocraft_common.operations import MODELS
from photocraft_common.settings import PlatformSettings, TritonSettings


class InferenceSettings(PlatformSettings):
    triton: TritonSettings = TritonSettings()
    # The Triton models whose topics this worker consumes.
    models: list[str] = list(MODELS)
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Seconds between two reports of what Triton's model repository holds.
    availability_interval_s: float = 5.0
