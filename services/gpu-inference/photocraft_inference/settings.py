import os
import socket

from pydantic import Field

from photocraft_common.settings import PlatformSettings, TritonSettings


class InferenceSettings(PlatformSettings):
    triton: TritonSettings = TritonSettings()
    # The Triton models whose topics this worker consumes.
    models: list[str] = ["u2netp"]
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
