"""Addresses of reusable stage results.

A stage's result is determined by the model (its weights and code: the
``photocraft.weights`` digest of its Triton config), the parameters it is
given and the content of its inputs. ``output_id`` digests exactly that, so
a later job of the same tenant that would compute the same thing finds the
result at ``cache_key`` instead, under the tenant's opaque prefix
(storage.tenant_prefix; see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json

from .keyring import Keyring
from .storage import tenant_prefix


def output_id(model: str, weights: str, params: dict, extension: str, input_ids: list[str]) -> str:
    """32 hex characters identifying a stage result."""
    identity = {"model": model, "weights": weights, "params": params, "format": extension, "inputs": input_ids}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def cache_key(keyring: Keyring, tenant_id: str, model: str, result_id: str, extension: str) -> str:
    """Where the tenant's result ``result_id`` of ``model`` is kept: under its opaque prefix."""
    return f"{tenant_prefix(keyring, tenant_id)}/cache/{model}/{result_id}.{extension}"
