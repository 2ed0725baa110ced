"""Shared fixtures of the model tests."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained() -> Path:
    """models/trained: the weights trained here and committed (defects.onnx), as a version folder."""
    return Path(__file__).resolve().parents[1] / "trained"
