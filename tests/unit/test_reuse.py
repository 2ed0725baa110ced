"""Addresses of reusable results: the same work gets the same address, different work another."""

from __future__ import annotations

from photocraft_common.keyring import Keyring
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.storage import tenant_prefix

BASE = {"model": "oidn", "weights": "abc", "params": {"strength": 1.0, "quality": 90}, "extension": "png",
        "input_ids": ["sha-of-photo"]}


def test_same_work_same_id_whatever_the_order_of_parameters():
    reordered = {**BASE, "params": {"quality": 90, "strength": 1.0}}
    assert output_id(**BASE) == output_id(**reordered)
    assert len(output_id(**BASE)) == 32


def test_any_difference_in_model_weights_params_format_or_input_changes_the_id():
    variants = [{"model": "tone"}, {"weights": "abd"}, {"params": {"strength": 0.5, "quality": 90}},
                {"extension": "jpg"}, {"input_ids": ["sha-of-another-photo"]}]
    ids = {output_id(**{**BASE, **change}) for change in variants}
    assert len(ids) == len(variants) and output_id(**BASE) not in ids


def test_results_are_kept_per_tenant_under_an_opaque_prefix():
    keyring, result = Keyring.generate(), output_id(**BASE)
    key = cache_key(keyring, "tenant-a", "oidn", result, "png")
    assert key != cache_key(keyring, "tenant-b", "oidn", result, "png")
    assert key == cache_key(keyring, "tenant-a", "oidn", result, "png")  # found again by a later job
    assert key == f"{tenant_prefix(keyring, 'tenant-a')}/cache/oidn/{result}.png" and "tenant-a" not in key
