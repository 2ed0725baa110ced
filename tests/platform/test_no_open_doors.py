"""No way around credentials (issue 12): a photo stored through the platform's S3 API comes back
only with the S3 keys or a presigned URL.

Every socket that a process started by `make up` listens on (supervisord's programs and their
children, found in /proc: TCP ports on 127.0.0.1 and Unix sockets) is tried without credentials:

- where it answers HTTP: reads by S3 path, by filer path and by volume file id, the master's
  lookup and redirect, listings, and writes (S3 PUT and DELETE, filer upload, volume overwrite,
  master assign and submit);
- everywhere: SeaweedFS's gRPC reads (filer listing and lookup, volume needle status and
  contents, master lookup), in clear, over TLS without a client certificate, and over TLS with a
  certificate from another CA.

No answer may hold the photo's bytes, name its folder (unless the request did), or hand out a
token; the writes must change nothing. The same gRPC reads with this installation's certificate
(var/s3/security, made by infra/bin/s3-secrets) succeed, so the probes aim at real doors.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from photocraft_common.contracts import ObjectRef
from photocraft_common.storage import ObjectStore

from ..certificates import make_server_certificate
from .helpers import ROOT, fresh, png_bytes, supervisorctl

SECURITY = ROOT / "var" / "s3" / "security"
WEED = ROOT / ".venv" / "bin" / "weed"
MASTER, FILER, VOLUME = "127.0.0.1:9333", "127.0.0.1:8888", "127.0.0.1:9340"  # as infra/bin/s3 starts SeaweedFS


@dataclass(frozen=True, order=True)
class Endpoint:
    address: str  # "127.0.0.1:<port>" or a Unix socket's path
    program: str  # the supervisord program that listens on it

    @property
    def unix(self) -> bool:
        return self.address.startswith("/")


@dataclass(frozen=True)
class Stored:
    ref: ObjectRef
    photo: bytes
    fid: str  # the volume file id of its only chunk: "<volume id>,<needle id><cookie>", hex

    @property
    def bucket(self) -> str:
        return self.ref.bucket

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def folder(self) -> str:
        return self.key.split("/")[0]


# ---- what `make up` listens on ----------------------------------------------------------------

def program_of_every_pid() -> dict[int, str]:
    """pid -> supervisord program name, for each running program and all its descendants."""
    roots = {int(m[2]): m[1] for m in re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+)", supervisorctl("status"), re.M)}
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue  # exited meanwhile
    owners = {}
    for pid in parents:
        ancestor = pid
        while ancestor and ancestor not in roots:
            ancestor = parents.get(ancestor, 0)
        if ancestor:
            owners[pid] = roots[ancestor]
    return owners


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass  # exited meanwhile, or an fd closed while listed
    return inodes


def listening_endpoints(owners: dict[int, str] | None = None) -> list[Endpoint]:
    """Every listening TCP port and Unix socket (with a path) of the processes `make up` started
    (or of ``owners``: pid -> program name)."""
    owners = program_of_every_pid() if owners is None else owners
    program = {inode: name for pid, name in owners.items() for inode in socket_inodes(pid)}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and int(fields[9]) in program:  # LISTEN
                found.add(Endpoint(f"127.0.0.1:{int(fields[1].split(':')[1], 16)}", program[int(fields[9])]))
    for row in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = row.split()
        accepting = int(fields[3], 16) & 0x10000
        if accepting and len(fields) > 7 and fields[7].startswith("/") and int(fields[6]) in program:
            found.add(Endpoint(fields[7], program[int(fields[6])]))
    return sorted(found)


# ---- HTTP --------------------------------------------------------------------------------------

def http_client(endpoint: Endpoint) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=endpoint.address) if endpoint.unix else None
    base = "http://localhost" if endpoint.unix else f"http://{endpoint.address}"
    return httpx.Client(base_url=base, transport=transport, timeout=5, follow_redirects=True, trust_env=False)


def speaks_http(endpoint: Endpoint) -> bool:
    with http_client(endpoint) as client:
        try:
            client.get("/")
            return True
        except httpx.HTTPError:
            return False


def http_reads(s: Stored) -> list[str]:
    volume, needle = s.fid.split(",")
    return [f"/{s.bucket}/{s.key}", f"/buckets/{s.bucket}/{s.key}", f"/{s.bucket}/{s.key}?metadata=true",
            f"/buckets/{s.bucket}/{s.key}?metadata=true", f"/{s.fid}", f"/{volume}/{needle}",
            f"/{s.fid}.png", f"/dir/lookup?fileId={s.fid}", f"/dir/lookup?fileId={s.fid}&read=yes",
            f"/buckets/{s.bucket}/{s.folder}/?pretty=y"]


LISTINGS = ["/", "/?pretty=y", "/buckets/", "/buckets/?pretty=y", "/ui/index.html", "/status", "/dir/status",
            "/vol/status", "/metrics", "/cluster/status"]


def http_listings(s: Stored) -> list[str]:
    volume = s.fid.split(",")[0]
    return [*LISTINGS, f"/{s.bucket}", f"/{s.bucket}/", f"/{s.bucket}?list-type=2", f"/buckets/{s.bucket}/",
            f"/buckets/{s.bucket}/?pretty=y", f"/dir/lookup?volumeId={volume}"]


def http_writes(s: Stored) -> list[tuple[str, str, dict]]:
    intruder = f"{s.folder}/intruder.png"
    upload = {"files": {"file": ("intruder.png", b"not a photo", "image/png")}}
    return [("PUT", f"/{s.bucket}/{intruder}", {"content": b"not a photo"}),
            ("POST", f"/buckets/{s.bucket}/{intruder}", upload),
            ("PUT", f"/buckets/{s.bucket}/{intruder}", {"content": b"not a photo"}),
            ("POST", f"/{s.fid}", upload), ("PUT", f"/{s.fid}", {"content": b"not a photo"}),
            ("POST", "/dir/assign", {}), ("POST", "/submit", upload),
            ("DELETE", f"/{s.bucket}/{s.key}", {}), ("DELETE", f"/buckets/{s.bucket}/{s.key}", {}),
            ("DELETE", f"/{s.fid}", {})]


def same_as_read(client: httpx.Client, path: str, answer: httpx.Response) -> bool:
    """Whether ``answer`` to a write is what a GET of ``path`` gives: a static page served whatever the method
    (Jaeger's UI answers every path and method with its index page), which took nothing in."""
    try:
        read = client.get(path)
    except httpx.HTTPError:
        return False
    return read.status_code == answer.status_code and read.content == answer.content


def http_leaks(endpoint: Endpoint, s: Stored) -> list[str]:
    """What answers of ``endpoint``, asked without credentials, gave away."""
    leaks = []
    with http_client(endpoint) as client:
        asked = [("GET", path, {}) for path in http_reads(s) + http_listings(s)] + http_writes(s)
        for method, path, options in asked:
            try:
                response = client.request(method, path, **options)
            except httpx.HTTPError:
                continue  # no answer gives nothing away
            where = f"{endpoint.address} {method} {path} -> {response.status_code}"
            if s.photo in response.content:
                leaks.append(f"{where}: the photo")
            if s.folder not in path and s.folder.encode() in response.content:
                leaks.append(f"{where}: the tenant's folder")
            if "authorization" in response.headers:
                leaks.append(f"{where}: a token")
            if method != "GET" and response.is_success and not same_as_read(client, path, response):
                leaks.append(f"{where}: accepted a write")
    return leaks


# ---- gRPC --------------------------------------------------------------------------------------

def request_types() -> dict[str, type]:
    """The few SeaweedFS request messages the probes send (field numbers from its .proto files)."""
    string, uint32, uint64 = (descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                              descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
                              descriptor_pb2.FieldDescriptorProto.TYPE_UINT64)
    one, many = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    messages = {"ListEntriesRequest": [("directory", 1, string, one)],
                "LookupDirectoryEntryRequest": [("directory", 1, string, one), ("name", 2, string, one)],
                "VolumeNeedleStatusRequest": [("volume_id", 1, uint32, one), ("needle_id", 2, uint64, one)],
                "ReadAllNeedlesRequest": [("volume_ids", 1, uint32, many)],
                "LookupVolumeRequest": [("volume_or_file_ids", 1, string, many)]}
    file = descriptor_pb2.FileDescriptorProto(name="probe.proto", package="probe", syntax="proto3")
    for name, fields in messages.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label in fields:
            message.field.add(name=field, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"probe.{name}")) for name in messages}


@dataclass(frozen=True)
class Rpc:
    method: str
    request: bytes
    streaming: bool = False


def rpcs(s: Stored, with_contents: bool = True) -> list[Rpc]:
    types = request_types()
    directory, name = f"/buckets/{s.bucket}/{s.key}".rsplit("/", 1)
    volume, needle = s.fid.split(",")
    volume_id, needle_id = int(volume), int(needle[:-8], 16)  # the last 8 hex digits are the cookie
    probes = [Rpc("/filer_pb.SeaweedFiler/ListEntries", types["ListEntriesRequest"](directory=directory)
                  .SerializeToString(), streaming=True),
              Rpc("/filer_pb.SeaweedFiler/LookupDirectoryEntry", types["LookupDirectoryEntryRequest"](
                  directory=directory, name=name).SerializeToString()),
              Rpc("/volume_server_pb.VolumeServer/VolumeNeedleStatus", types["VolumeNeedleStatusRequest"](
                  volume_id=volume_id, needle_id=needle_id).SerializeToString()),
              Rpc("/master_pb.Seaweed/LookupVolume", types["LookupVolumeRequest"](
                  volume_or_file_ids=[s.fid]).SerializeToString())]
    if with_contents:  # streams the whole volume when it is let through
        probes.append(Rpc("/volume_server_pb.VolumeServer/ReadAllNeedles", types["ReadAllNeedlesRequest"](
            volume_ids=[volume_id]).SerializeToString(), streaming=True))
    return probes


def grpc_target(endpoint: Endpoint) -> str:
    return f"unix:{endpoint.address}" if endpoint.unix else endpoint.address


def call(endpoint: Endpoint, credentials: grpc.ChannelCredentials | None, rpc: Rpc) -> bytes:
    """The answer's bytes (what a stream sent before it ended, even cut short by the 3 s deadline);
    raises grpc.RpcError when refused or failed before answering anything."""
    target = grpc_target(endpoint)
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        if not rpc.streaming:
            return channel.unary_unary(rpc.method)(rpc.request, timeout=3)
        received = []
        try:
            received.extend(channel.unary_stream(rpc.method)(rpc.request, timeout=3))
        except grpc.RpcError:
            if not received:
                raise
        return b"".join(received)


def grpc_answers(endpoint: Endpoint, credentials: grpc.ChannelCredentials | None,
                 probes: list[Rpc]) -> dict[str, bytes]:
    """method -> answer, for the probes that ``endpoint`` answered."""
    answers = {}
    for rpc in probes:
        try:
            answers[rpc.method] = call(endpoint, credentials, rpc)
        except grpc.RpcError:
            continue
    return answers


# ---- the test ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
async def stored(settings, astronaut):
    store = ObjectStore(settings.s3)
    key = f"{secrets.token_hex(16)}/{uuid.uuid4()}/input/original.png"  # an upload's layout (storage.py)
    photo = png_bytes(fresh(astronaut))
    ref = await store.put(key, photo, "image/png")
    meta = subprocess.run([WEED, f"-config_dir={SECURITY}", "shell", f"-master={MASTER}", f"-filer={FILER}"],
                          input=f"fs.meta.cat /buckets/{ref.bucket}/{key}\n", cwd=SECURITY, capture_output=True,
                          text=True, timeout=60)
    fids = re.findall(r'"fileId":\s*"(\d+,[0-9a-f]+)"', meta.stdout)
    assert len(fids) == 1, f"expected one chunk, weed shell said:\n{meta.stdout}{meta.stderr}"
    yield Stored(ref, photo, fids[0])
    store.client.delete_object(Bucket=ref.bucket, Key=key)


def test_nothing_that_make_up_opened_gives_a_photo_without_credentials(stored, settings, tmp_path):
    endpoints = listening_endpoints()
    tcp = {e.address for e in endpoints if not e.unix}
    assert {f"127.0.0.1:{port}" for port in (8333, 8888, 9333, 9340, 6379, 9092, 8080)} <= tcp, endpoints
    ca = (SECURITY / "ca.crt").read_bytes()
    foreign = make_server_certificate(tmp_path / "foreign")
    anonymous = {"in clear": None, "TLS without a certificate": grpc.ssl_channel_credentials(ca),
                 "TLS with another CA's certificate": grpc.ssl_channel_credentials(
                     ca, foreign.key.read_bytes(), foreign.certificate.read_bytes())}
    tries = [(endpoint, how, credentials, rpc) for endpoint in endpoints
             for how, credentials in anonymous.items() for rpc in rpcs(stored)]

    def grpc_leak(endpoint: Endpoint, how: str, credentials: grpc.ChannelCredentials | None, rpc: Rpc) -> list[str]:
        try:
            call(endpoint, credentials, rpc)
        except grpc.RpcError:
            return []
        return [f"{endpoint.address} gRPC {how}: {rpc.method} answered"]

    with ThreadPoolExecutor(max_workers=16) as pool:  # a refused TLS handshake may take the whole deadline
        http = dict(zip(endpoints, pool.map(speaks_http, endpoints), strict=True))
        found = list(pool.map(lambda endpoint: http_leaks(endpoint, stored), [e for e in endpoints if http[e]]))
        found += pool.map(lambda attempt: grpc_leak(*attempt), tries)
    leaks = [leak for some in found for leak in some]
    print(f"\n{len(endpoints)} sockets of `make up`, probed without credentials (HTTP where it answers HTTP, "
          "gRPC everywhere):")
    for endpoint in endpoints:
        leaked = any(leak.startswith(f"{endpoint.address} ") for leak in leaks)
        print(f"  {endpoint.program:<28} {endpoint.address:<42} {'HTTP' if http[endpoint] else 'not HTTP'}"
              f"{'  LEAKS' if leaked else ''}")
    assert not leaks, "\n".join(leaks)

    # The writes changed nothing: the folder holds the photo alone, as it was.
    s3 = ObjectStore(settings.s3).client
    listed = s3.list_objects_v2(Bucket=stored.bucket, Prefix=f"{stored.folder}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [stored.key]
    assert s3.get_object(Bucket=stored.bucket, Key=stored.key)["Body"].read() == stored.photo


def test_the_probes_aim_at_real_doors_that_open_with_credentials(stored):
    """With this installation's client certificate, SeaweedFS's gRPC ports answer the same reads."""
    ca, key, certificate = ((SECURITY / name).read_bytes() for name in ("ca.crt", "seaweedfs.key", "seaweedfs.crt"))
    credentials = grpc.ssl_channel_credentials(ca, key, certificate)
    seaweed = [e for e in listening_endpoints() if not e.unix and e.address != "127.0.0.1:8333"
               and e.program == "infra:s3"]
    answered: dict[str, bytes] = {}
    for endpoint in seaweed:
        answered |= grpc_answers(endpoint, credentials, rpcs(stored, with_contents=False))
    name = stored.key.rsplit("/", 1)[1].encode()
    assert name in answered.get("/filer_pb.SeaweedFiler/ListEntries", b""), answered.keys()
    assert stored.fid.encode() in answered.get("/filer_pb.SeaweedFiler/LookupDirectoryEntry", b"")
    assert "/volume_server_pb.VolumeServer/VolumeNeedleStatus" in answered
    assert VOLUME.encode() in answered.get("/master_pb.Seaweed/LookupVolume", b"")


async def test_the_s3_api_still_serves_the_photo_with_keys_or_a_presigned_url(stored, settings):
    store = ObjectStore(settings.s3)
    assert await store.get(stored.ref) == stored.photo
    assert httpx.get(store.presigned_get_url(stored.ref), timeout=10, trust_env=False).content == stored.photo
    anonymous = httpx.get(f"{settings.s3.endpoint_url}/{stored.bucket}/{stored.key}", timeout=10, trust_env=False)
    assert anonymous.status_code == 403 and stored.photo not in anonymous.content
