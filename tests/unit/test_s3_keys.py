"""The local S3's keys: made per installation by infra/bin/s3-secrets, read by the settings' local profile and by
models/weights.py, required in production; none in the source."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from photocraft_common import settings as settings_module
from photocraft_common.keyring import Keyring
from photocraft_common.settings import PlatformSettings, S3KeysMissing, local_s3_keys

ROOT = Path(__file__).resolve().parents[2]


def plain(config: Path) -> tuple[str, str]:
    return tuple(key.get_secret_value() for key in local_s3_keys(config))


@pytest.fixture
def environ(monkeypatch):
    for name in [n for n in os.environ if n.startswith("PHOTOCRAFT_")]:
        monkeypatch.delenv(name)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A folder as infra/bin/s3-secrets makes it at a stack's first start."""
    folder = tmp_path_factory.mktemp("s3") / "security"
    subprocess.run([ROOT / "infra" / "bin" / "s3-secrets", folder], check=True, timeout=60)
    return folder


@pytest.fixture
def local_config(made, monkeypatch) -> Path:
    monkeypatch.setattr(settings_module, "LOCAL_S3_CONFIG", made / "s3.json")
    return made / "s3.json"


def test_s3_secrets_makes_random_private_keys_once(made, tmp_path):
    config = json.loads((made / "s3.json").read_text())
    [identity] = config["identities"]
    assert identity["name"] == "photocraft" and set(identity["actions"]) >= {"Admin", "Read", "Write", "List"}
    key_id, secret = plain(made / "s3.json")
    assert len(key_id) == 20 and len(secret) == 40 and int(secret, 16) >= 0
    assert stat.S_IMODE((made / "s3.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    subprocess.run([ROOT / "infra" / "bin" / "s3-secrets", made], check=True, timeout=60)
    assert plain(made / "s3.json") == (key_id, secret)  # kept at the next start
    other = tmp_path / "security"
    subprocess.run([ROOT / "infra" / "bin" / "s3-secrets", other], check=True, timeout=60)
    assert plain(other / "s3.json")[1] != secret  # another installation, other keys
    toml = (other / "security.toml").read_bytes()
    (other / "s3.json").unlink()  # rotation: delete it (platform down); the next start makes new keys alone
    subprocess.run([ROOT / "infra" / "bin" / "s3-secrets", other], check=True, timeout=60)
    assert plain(other / "s3.json")[1] != secret and (other / "security.toml").read_bytes() == toml


def test_the_local_profile_reads_the_stacks_keys(environ, local_config):
    s3 = PlatformSettings().s3
    assert (s3.access_key_id, s3.secret_access_key) == local_s3_keys(local_config)
    environ(PHOTOCRAFT_S3__ACCESS_KEY_ID="own-key", PHOTOCRAFT_S3__SECRET_ACCESS_KEY="own-secret")
    assert PlatformSettings().s3.required_keys() == ("own-key", "own-secret")  # the environment wins


def test_without_the_file_or_the_variables_there_are_no_keys(environ, tmp_path, monkeypatch):
    monkeypatch.setattr(settings_module, "LOCAL_S3_CONFIG", tmp_path / "s3.json")
    s3 = PlatformSettings().s3
    assert s3.access_key_id is None and s3.secret_access_key is None
    with pytest.raises(S3KeysMissing, match="make up"):
        s3.required_keys()


def test_one_key_alone_is_refused_naming_the_other(environ, local_config):
    environ(PHOTOCRAFT_S3__ACCESS_KEY_ID="own-key")
    with pytest.raises(ValidationError, match="PHOTOCRAFT_S3__SECRET_ACCESS_KEY is unset"):
        PlatformSettings()


@pytest.mark.parametrize("content", ['{"identities": []}', "not json", '{"identities": [{"name": "photocraft", '
                                     '"credentials": [{"accessKey": "Q7zkey", "secretKey": ""}]}]}'])
def test_a_broken_file_is_named_without_its_contents(environ, local_config, tmp_path, monkeypatch, content):
    broken = tmp_path / "s3.json"
    broken.write_text(content)
    monkeypatch.setattr(settings_module, "LOCAL_S3_CONFIG", broken)
    with pytest.raises(ValidationError, match="holds no S3 keys of identity 'photocraft'") as refused:
        PlatformSettings()
    assert str(broken) in str(refused.value) and "Q7z" not in str(refused.value)


def test_production_needs_its_own_keys_and_never_reads_the_local_file(environ, local_config):
    environ(PHOTOCRAFT_PROFILE="production", PHOTOCRAFT_KEYRING=Keyring.generate().to_json())
    with pytest.raises(ValidationError, match="needs the S3 keys: set PHOTOCRAFT_S3__ACCESS_KEY_ID and "
                                              "PHOTOCRAFT_S3__SECRET_ACCESS_KEY"):
        PlatformSettings()
    environ(PHOTOCRAFT_S3__ACCESS_KEY_ID="prod-key", PHOTOCRAFT_S3__SECRET_ACCESS_KEY="prod-secret")
    assert PlatformSettings().s3.required_keys() == ("prod-key", "prod-secret")


def test_models_weights_reads_the_same_keys(environ, made):
    """models/weights.py runs in .venv-triton without photocraft_common: it reads the file itself."""
    spec = importlib.util.spec_from_file_location("weights", ROOT / "models" / "weights.py")
    weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights)
    assert weights.LOCAL_S3_CONFIG == settings_module.LOCAL_S3_CONFIG
    assert weights.s3_keys(made / "s3.json") == plain(made / "s3.json")
    with pytest.raises(SystemExit, match="make up"):
        weights.s3_keys(made / "nowhere.json")
    environ(PHOTOCRAFT_S3__ACCESS_KEY_ID="own-key")
    with pytest.raises(SystemExit, match="set both"):
        weights.s3_keys(made / "s3.json")
    environ(PHOTOCRAFT_S3__SECRET_ACCESS_KEY="own-secret")
    assert weights.s3_keys(made / "nowhere.json") == ("own-key", "own-secret")


def test_no_s3_key_in_the_source():
    """The keys the source once published are gone from every file git tracks or would add."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    public = b"photocraft-local-" + b"secret"  # split, so that this file does not hold it
    files = [ROOT / name for name in listed if name and (ROOT / name).is_file()]
    assert not [str(f.relative_to(ROOT)) for f in files if public in f.read_bytes()]
    assert not (ROOT / "infra" / "s3.json").exists()
