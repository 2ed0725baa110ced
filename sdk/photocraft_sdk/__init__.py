"""Photocraft's Python SDK: :class:`Client` submits jobs and batches, follows their events
(resuming after dropped connections) and downloads results. The ``photocraft`` command is in
:mod:`photocraft_sdk.cli`."""

from .client import Client
from .errors import ApiError, JobFailed, PhotocraftError, StreamInterrupted, StreamRefused, Unreachable
from .events import follow, websocket_stream

__all__ = ["ApiError", "Client", "JobFailed", "PhotocraftError", "StreamInterrupted", "StreamRefused",
           "Unreachable", "follow", "websocket_stream"]
