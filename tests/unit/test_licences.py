"""The dependency licence check of scripts/licences.py (issue 16): a licence outside licences.toml fails it,
exceptions and our own packages pass, and THIRD_PARTY.md's model section matches models/registry.toml."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("licences", ROOT / "scripts" / "licences.py")
licences = sys.modules["licences"] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(licences)
POLICY = licences.load_policy(ROOT / "licences.toml")


def pkg(name: str, licence: str) -> dict:
    return {"Name": name, "Version": "1.0", "License": licence}


def test_allowed_licences_in_their_many_spellings_pass():
    packages = [pkg("a", "MIT License"), pkg("b", "Apache Software License; BSD License"), pkg("c", "Apache-2.0 OR "
                "BSD-3-Clause"), pkg("d", "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSL-1.0"),
                pkg("photocraft-common", "UNKNOWN")]
    assert licences.violations(packages, POLICY) == []


@pytest.mark.parametrize("licence", ["GPL-3.0-only", "AGPL-3.0-or-later", "MIT AND GPL-2.0-only", "UNKNOWN",
                                     "Some Custom Licence (see file)", "Apache Software License; GPL"])
def test_a_licence_outside_the_allow_list_fails(licence):
    found = licences.violations([pkg("ok", "MIT"), pkg("newdep", licence)], POLICY)
    assert len(found) == 1 and found[0].startswith("newdep 1.0:")


def test_an_or_needs_only_one_allowed_term():
    assert licences.violations([pkg("dual", "GPL-2.0-only OR MIT")], POLICY) == []


def test_exceptions_pass_and_state_the_real_licence():
    nvidia = pkg("nvidia-cublas", "LicenseRef-NVIDIA-Proprietary")
    assert licences.violations([nvidia], POLICY) == []
    assert "NVIDIA" in licences.licence_of(nvidia, POLICY)
    assert licences.licence_of(pkg("pi_heif", "BSD-3-Clause"), POLICY).startswith("LGPL-3.0")


def test_every_exception_has_a_reason():
    assert POLICY.exceptions and all(reason.strip() for _, reason in POLICY.exceptions.values())


def test_third_party_md_lists_the_registry_models_as_generated():
    registry = tomllib.loads((ROOT / "models" / "registry.toml").read_text())
    section = licences.models_section(registry)
    text = (ROOT / "THIRD_PARTY.md").read_text()
    start = text.index(licences.MODELS_HEADING)
    assert text[start:start + len(section)] == section, "THIRD_PARTY.md is stale: make notices"
    assert "sd_turbo" in section and section.count("Not for commercial use.**") == 1
