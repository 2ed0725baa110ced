"""No way around credentials (issue 12): the local S3's keys are this installation's own.

infra/bin/s3-secrets makes them at the stack's first start (var/s3/security/s3.json, random, 0600) and
every local consumer reads them from there. The keys the source once carried, which anyone could read,
open nothing; the installation's keys are in no file that git tracks or would add.
"""

from __future__ import annotations

import stat
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from photocraft_common.settings import LOCAL_S3_CONFIG, S3Settings, local_s3_keys
from photocraft_common.storage import make_client

from .helpers import ROOT

# What infra/s3.json and settings.py published until the keys became per installation, as an attacker
# who read the source (or an old clone) would try them (the secret split: tests/unit/test_s3_keys.py checks
# that no file holds it).
PUBLIC_ACCESS_KEY_ID, PUBLIC_SECRET_ACCESS_KEY = "photocraft-local", "photocraft-local-" + "secret"


@pytest.fixture(scope="module")
def stored(s3, settings):
    key = f"{uuid.uuid4().hex}/{uuid.uuid4()}/input/original.png"
    s3.put_object(Bucket=settings.s3.bucket, Key=key, Body=b"a private photo", ContentType="image/png")
    yield key
    s3.delete_object(Bucket=settings.s3.bucket, Key=key)


def client_with(settings, key_id: str, secret: str):
    return make_client(S3Settings(endpoint_url=settings.s3.endpoint_url, access_key_id=key_id,
                                  secret_access_key=secret))


def refused(call) -> str:
    """The error code of an S3 call that must answer 403; fails the test when it succeeds."""
    with pytest.raises(ClientError) as answered:
        call()
    assert answered.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, answered.value.response
    return answered.value.response["Error"]["Code"]


def test_the_stack_uses_the_installations_keys_from_var(settings):
    key_id, secret = local_s3_keys(LOCAL_S3_CONFIG)
    assert (settings.s3.access_key_id, settings.s3.secret_access_key) == (key_id, secret)
    assert key_id.get_secret_value() != PUBLIC_ACCESS_KEY_ID
    assert secret.get_secret_value() != PUBLIC_SECRET_ACCESS_KEY and len(secret.get_secret_value()) >= 40
    assert stat.S_IMODE(LOCAL_S3_CONFIG.stat().st_mode) == 0o600
    assert stat.S_IMODE(LOCAL_S3_CONFIG.parent.stat().st_mode) == 0o700


def test_the_keys_once_in_the_source_are_refused(s3, settings, stored):
    bucket = settings.s3.bucket
    assert s3.get_object(Bucket=bucket, Key=stored)["Body"].read() == b"a private photo"  # the door is real
    public = client_with(settings, PUBLIC_ACCESS_KEY_ID, PUBLIC_SECRET_ACCESS_KEY)
    assert refused(public.list_buckets) == "InvalidAccessKeyId"
    assert refused(lambda: public.get_object(Bucket=bucket, Key=stored)) == "InvalidAccessKeyId"
    assert refused(lambda: public.list_objects_v2(Bucket=bucket)) == "InvalidAccessKeyId"
    refused(lambda: public.put_object(Bucket=bucket, Key=stored, Body=b"overwritten"))
    # The installation's access key id with a guessed secret: the signature is checked.
    guessed = client_with(settings, settings.s3.access_key_id.get_secret_value(), PUBLIC_SECRET_ACCESS_KEY)
    assert refused(lambda: guessed.get_object(Bucket=bucket, Key=stored)) == "SignatureDoesNotMatch"
    assert s3.get_object(Bucket=bucket, Key=stored)["Body"].read() == b"a private photo"


def test_no_file_git_tracks_or_would_add_holds_the_keys(settings):
    secrets = [settings.s3.access_key_id.get_secret_value().encode(),
               settings.s3.secret_access_key.get_secret_value().encode()]
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [ROOT / name for name in listed if name and (ROOT / name).is_file()]
    assert len(files) > 100 and ROOT / "common" / "photocraft_common" / "settings.py" in files
    assert not [str(f.relative_to(ROOT)) for f in files if any(s in f.read_bytes() for s in secrets)]
    assert str(LOCAL_S3_CONFIG.relative_to(ROOT)) not in listed
    for secret in secrets:  # nor the last commit
        found = subprocess.run(["git", "grep", "-q", "-F", secret.decode(), "HEAD"], cwd=ROOT, capture_output=True)
        assert found.returncode == 1, found.stderr
