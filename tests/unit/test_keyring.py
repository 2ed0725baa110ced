"""The installation's keyring: its validation, device tokens signed with a key id (and rotation), the tenants'
opaque S3 prefixes, and the access policy that answers someone else's record as an unknown one. On fakeredis;
nothing needs to run."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakeredis import FakeAsyncRedis
from itsdangerous import URLSafeTimedSerializer
from pydantic import ValidationError

from photocraft_common.access import Access, access
from photocraft_common.accounts import Accounts, Identity
from photocraft_common.keyring import Keyring, KeyringMissing
from photocraft_common.storage import input_key, stage_key, tenant_prefix
from photocraft_common.tiers import Tier

from .fake_accounts import MemoryAccounts

SECRET_A, SECRET_B = "a" * 40, "b" * 40
ROOT = Path(__file__).resolve().parents[2]


def ring(current: str, **keys: str) -> Keyring:
    return Keyring(current=current, keys=keys)


# -- the keyring ----------------------------------------------------------------------------------------------


def test_a_generated_keyring_has_one_random_key_of_256_bits():
    first, second = Keyring.generate(), Keyring.generate()
    assert list(first.keys) == [first.current] and first.current.startswith("k")
    assert len(first.secret(first.current)) == 43  # 32 random bytes, base64url
    assert first.secret(first.current) != second.secret(second.current)


@pytest.mark.parametrize(("given", "message"), [
    ({"current": "k1", "keys": {"k1": "Q7z-secret"}}, "shorter than 32 characters"),
    ({"current": "k2", "keys": {"k1": SECRET_A}}, "current key 'k2' is not among its keys"),
    ({"current": "k1", "keys": {}}, "at least 1 item"),
    ({"current": "k.1", "keys": {"k.1": SECRET_A}}, "pattern"),  # a dot would end the token's key id
])
def test_a_malformed_keyring_is_refused_without_showing_its_secrets(given, message):
    with pytest.raises(ValidationError) as refused:
        Keyring.model_validate(given)
    assert message in str(refused.value)
    assert "Q7z" not in str(refused.value) and SECRET_A not in str(refused.value)


def test_a_keyring_file_round_trips_and_a_bad_one_is_named(tmp_path):
    keyring = Keyring.generate("2025-06")
    (tmp_path / "keyring.json").write_text(keyring.to_json())
    assert Keyring.read(tmp_path / "keyring.json", "SETTING") == keyring
    (tmp_path / "bad.json").write_text(json.dumps({"current": "x", "keys": {"x": "tiny"}}))
    refusal = r"SETTING: .*bad.json is not a keyring \(keyring: the secrets of x are shorter"
    with pytest.raises(ValueError, match=refusal) as refused:
        Keyring.read(tmp_path / "bad.json", "SETTING")
    assert "tiny" not in str(refused.value)
    with pytest.raises(ValueError, match="SETTING: cannot read"):
        Keyring.read(tmp_path / "nowhere.json", "SETTING")


def test_the_stack_makes_the_keyring_once_readable_by_its_owner_only(tmp_path):
    """infra/stack.py's ensure_keyring, run as make up runs it (a fresh folder, then again)."""
    path = tmp_path / "secrets" / "keyring.json"
    script = ("import sys; from pathlib import Path; sys.path.insert(0, 'infra'); import stack; "
              f"stack.ROOT = Path({str(tmp_path)!r}); stack.ensure_keyring(Path({str(path)!r}))")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, timeout=60)
    made = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    Keyring.model_validate_json(made)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert path.read_text() == made  # kept across restarts
    path.write_text("{}")
    broken = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "is not a keyring" in broken.stderr


# -- device tokens --------------------------------------------------------------------------------------------


@pytest.fixture
async def redis():
    client = FakeAsyncRedis()
    yield client
    await client.aclose()


def test_a_device_token_names_its_key_and_opens_only_with_that_keyring(redis):
    accounts = Accounts(None, ring("k1", k1=SECRET_A))
    device = accounts.new_device()
    kid, _, signed = device.issued_token.partition(".")
    assert kid == "k1" and device.tenant_id == f"device-{device.device_id}" and device.tier is Tier.ANONYMOUS
    assert accounts.by_device_token(device.issued_token) == Identity(device.tenant_id, Tier.ANONYMOUS,
                                                                     device_id=device.device_id)
    another_installation = Accounts(None, ring("k1", k1=SECRET_B))
    assert another_installation.by_device_token(device.issued_token) is None


def test_knowing_a_device_id_is_not_enough_to_mint_its_token(redis):
    accounts = Accounts(None, ring("k1", k1=SECRET_A))
    device = accounts.new_device()
    for secret in ("photocraft-local-development-only", SECRET_B):  # the old source default, a guess
        forged = "k1." + URLSafeTimedSerializer(secret, salt="photocraft-device").dumps(device.device_id)
        assert accounts.by_device_token(forged) is None
    signed = device.issued_token.partition(".")[2]
    for malformed in ("", "k1", "k1.", signed, f"k2.{signed}", f"k1.{signed[:-2]}xx", "k1.a.b.c"):
        assert accounts.by_device_token(malformed) is None


def test_rotation_keeps_old_tokens_valid_until_their_key_is_dropped(redis):
    before = Accounts(None, ring("k1", k1=SECRET_A)).new_device()
    rotated = Accounts(None, ring("k2", k1=SECRET_A, k2=SECRET_B))
    after = rotated.new_device()

    assert after.issued_token.startswith("k2.")
    assert rotated.by_device_token(before.issued_token).device_id == before.device_id
    dropped = Accounts(None, ring("k2", k2=SECRET_B))
    assert dropped.by_device_token(before.issued_token) is None
    assert dropped.by_device_token(after.issued_token).device_id == after.device_id


async def test_accounts_without_a_keyring_manage_keys_but_refuse_device_tokens(redis):
    accounts = MemoryAccounts()
    key = await accounts.create_key("acme", Tier.PRO)
    assert (await accounts.by_key(key)).tenant_id == "acme"
    with pytest.raises(KeyringMissing):
        accounts.new_device()
    with pytest.raises(KeyringMissing):
        accounts.by_device_token("k1.x")


# -- S3 prefixes ----------------------------------------------------------------------------------------------


def test_s3_keys_carry_an_opaque_per_tenant_prefix_not_the_tenant_or_device_id():
    keyring, device = ring("k1", k1=SECRET_A), "device-3f9a0c1b2d4e5f60718293a4"
    prefix = tenant_prefix(keyring, device)
    keys = [input_key(keyring, device, "job1", "png"), stage_key(keyring, device, "job1", "segment", "png")]
    assert keys == [f"{prefix}/job1/input/original.png", f"{prefix}/job1/stages/segment.png"]
    assert len(prefix) == 32 and int(prefix, 16) >= 0
    assert all("3f9a0c1b2d4e5f60718293a4" not in key and "device" not in key for key in keys)
    assert tenant_prefix(keyring, "acme") != prefix  # per tenant
    assert tenant_prefix(ring("k1", k1=SECRET_B), device) != prefix  # not computable without the keyring
    assert tenant_prefix(ring("k2", k1=SECRET_A, k2=SECRET_B), device) != prefix  # a new current key, new prefixes


# -- the access policy ----------------------------------------------------------------------------------------


@dataclass
class Record:
    tenant_id: str
    token: str = "the-record-token"

    def token_matches(self, token: str) -> bool:
        return token == self.token


async def test_someone_elses_record_is_answered_as_an_unknown_one(redis):
    accounts = MemoryAccounts(ring("k1", k1=SECRET_A))
    mine, theirs = await accounts.create_key("acme", Tier.PRO), await accounts.create_key("globex", Tier.PRO)
    device, other_device = accounts.new_device(), accounts.new_device()
    record, device_record = Record("acme"), Record(device.tenant_id)

    assert await access(record, accounts, bearer="the-record-token") is Access.GRANTED
    assert await access(record, accounts, bearer=mine) is Access.GRANTED
    assert await access(device_record, accounts, device_token=device.issued_token) is Access.GRANTED
    refused = [await access(record, accounts, bearer=theirs), await access(record, accounts, bearer="pc_unknown"),
               await access(device_record, accounts, device_token=other_device.issued_token),
               await access(device_record, accounts, bearer=mine), await access(record, accounts, device_token="x")]
    unknown = [await access(None, accounts, bearer=mine), await access(None, accounts, device_token="x")]
    assert set(refused) == set(unknown) == {Access.NOT_FOUND}
    assert await access(record, accounts) is await access(None, accounts) is Access.MISSING
    assert {a.name for a in Access} == {"GRANTED", "MISSING", "NOT_FOUND"}  # nothing that says "exists"


def test_no_device_secret_is_left_in_the_source():
    sources = [p for d in ("common", "services", "charts", "bench") for p in (ROOT / d).rglob("*") if p.is_file()
               and p.suffix in (".py", ".yaml", ".tpl", ".json")]
    assert len(sources) > 50
    for source in sources:
        text = source.read_text()
        assert "photocraft-local-development-only" not in text and "device_token_secret" not in text, source
