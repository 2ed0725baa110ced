"""Prometheus metrics of gpu-inference, served on ``PHOTOCRAFT_METRICS_HOST``:``PHOTOCRAFT_METRICS_PORT``
(path /metrics, beside /healthz and /readyz; see main.py).

Labels: ``instance`` is the Triton instance's gRPC address, ``model`` the Triton model.
"""

from prometheus_client import Counter, Gauge, Histogram

LOADS = Counter("photocraft_model_loads_total", "Models loaded into a Triton instance", ["instance", "model"])
UNLOADS = Counter("photocraft_model_unloads_total", "Models unloaded; reason: lru or idle",
                  ["instance", "model", "reason"])
HITS = Counter("photocraft_residency_hits_total", "Requests for a model already loaded", ["instance", "model"])
MISSES = Counter("photocraft_residency_misses_total", "Requests that had to load their model",
                 ["instance", "model"])
LOAD_SECONDS = Histogram("photocraft_model_load_seconds", "Time to load a model", ["instance", "model"],
                         buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120))
IN_FLIGHT = Gauge("photocraft_requests_in_flight", "Requests holding a model", ["instance", "model"])
RESIDENT_BYTES = Gauge("photocraft_resident_bytes", "Budgeted memory of the loaded models", ["instance"])
INSTANCE_UP = Gauge("photocraft_triton_up", "1 while the Triton instance answers ready", ["instance"])
FAILOVERS = Counter("photocraft_triton_failovers_total", "Requests moved off a failing instance", ["instance"])
STEP_SECONDS = Histogram("photocraft_worker_step_seconds",
                         "Seconds of one step of a task: fetch (input from S3), decode, model (inference and its "
                         "post-processing), encode, store (result to S3)", ["model", "step"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))


def step(model: str, name: str):
    """A context manager that observes the seconds its block takes as ``name`` of a task of ``model``."""
    return STEP_SECONDS.labels(model, name).time()
