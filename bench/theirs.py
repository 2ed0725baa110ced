"""rembg for the speed benchmark: its own virtual environment, our U²-Net-p weights, a warm worker.

- ``ensure_venv()`` makes var/bench/rembg-venv (``rembg[cpu,cli]`` 2.0.86 from PyPI, versions pinned by
  bench/rembg-constraints.txt) once;
- ``place_weights()`` puts the fp32 U²-Net-p we install (models/registry.toml ``[models.u2netp]``,
  var/model-repository/u2netp/1/model.onnx) where rembg looks for it: ``$U2NET_HOME/models/u2netp/
  u2netp.onnx``, U2NET_HOME being var/bench/u2net, after checking its SHA-256 against the registry;
- ``Remover`` runs bench/rembg_worker.py in that environment: ``remove()`` with a warm session;
- ``folder()`` times ``rembg p -m u2netp`` over a folder, as a user runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "var" / "bench" / "rembg-venv"
U2NET_HOME = ROOT / "var" / "bench" / "u2net"
CONSTRAINTS = ROOT / "bench" / "rembg-constraints.txt"
OUR_WEIGHTS = ROOT / "var" / "model-repository" / "u2netp" / "1" / "model.onnx"
REMBG = "rembg[cpu,cli]==2.0.86"


def ensure_venv() -> Path:
    """The environment's python, made (about a minute, from PyPI) if it is not there."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".stamp"
    if not stamp.exists() or stamp.read_text() != CONSTRAINTS.read_text():
        print(f"making rembg's environment in {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run(["python3", "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", REMBG, "-c", CONSTRAINTS], check=True)
        stamp.write_text(CONSTRAINTS.read_text())
    return python


def place_weights() -> Path:
    """Copy our fp32 U²-Net-p to where rembg finds it; returns the copy. RuntimeError if our
    weights are missing or are not the registry's."""
    with open(ROOT / "models" / "registry.toml", "rb") as f:
        entry = tomllib.load(f)["models"]["u2netp"]
    expected = next(spec["sha256"] for spec in entry["files"] if spec["as"] == "model.onnx")
    if not OUR_WEIGHTS.exists():
        raise RuntimeError(f"{OUR_WEIGHTS} is missing: run `make weights`")
    if hashlib.sha256(OUR_WEIGHTS.read_bytes()).hexdigest() != expected:
        raise RuntimeError(f"{OUR_WEIGHTS} is not the registry's u2netp (sha256 {expected})")
    target = U2NET_HOME / "models" / "u2netp" / "u2netp.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OUR_WEIGHTS, target)
    return target


def environment() -> dict[str, str]:
    return {**os.environ, "U2NET_HOME": str(U2NET_HOME)}


class Remover:
    """rembg's ``remove()`` in a worker process of its environment, its session warm.

    ``remove(photo, out)`` returns the seconds ``remove()`` took on the photo's bytes (PNG written to
    ``out``); ``info`` is the worker's description of its session. RuntimeError if the worker fails.
    """

    def __init__(self, python: Path, warm_photo: Path) -> None:
        self._process = subprocess.Popen([python, ROOT / "bench" / "rembg_worker.py", warm_photo],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env=environment())
        self.info = self._answer()

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"rembg's worker exited ({self._process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"rembg's worker: {answer['error']}")
        return answer

    def remove(self, photo: Path, out: Path) -> float:
        self._process.stdin.write(json.dumps({"input": str(photo), "output": str(out)}) + "\n")
        self._process.stdin.flush()
        return self._answer()["seconds"]

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(timeout=30)


def folder(python: Path, source: Path, out: Path) -> float:
    """Seconds ``rembg p -m u2netp source out`` takes, start of the process to its end (the session is
    made in it, as for any user of ``rembg p``). ``out`` is emptied first. CalledProcessError if it fails."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run([python.parent / "rembg", "p", "-m", "u2netp", source, out], check=True, env=environment(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start
