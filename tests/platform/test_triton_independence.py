"""Two Triton instances on one machine do not depend on each other: killing one (its server, or the
infra/bin/triton wrapper that runs it) and restarting it leaves the other serving, and leaves nothing
of the killed one running, no server and no python backend stub (issue 12, item 8). A stub whose server
died usually exits by itself within a second, but not always (the python backend of Triton 2.51 can
hang in its exit, holding its memory): the tests stop the stubs (SIGSTOP) before the kill, so that only
the instance's own clean-up can end them.

The test starts its own instances (infra/bin/triton on HTTP ports 8400 and 8500, the platform's model
repository) so that the platform's instances are not disturbed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from skimage import data

from .helpers import ROOT, start_triton

VICTIM, SURVIVOR = 8400, 8500  # HTTP ports; gRPC on the next
STUB = "triton_python_b"  # triton_python_backend_stub, as the kernel truncates command names
SERVING_S = 5
GONE_S = 10


@dataclass(frozen=True)
class Proc:
    """One process from /proc/<pid>/stat, known by its PID and ``start`` (clock ticks after boot, which tell
    a reused PID apart)."""

    pid: int
    start: int
    name: str = field(compare=False)
    state: str = field(compare=False)
    parent: int = field(compare=False)
    group: int = field(compare=False)


def processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        found.append(Proc(int(entry.name), int(fields[19]), name, fields[0], int(fields[1]), int(fields[2])))
    return found


def running(procs: set[Proc]) -> set[Proc]:
    """Those of ``procs`` still running (a zombie has ended: only its exit status is left)."""
    return {p for p in processes() if p in procs and p.state != "Z"}


def stop_stubs(procs: set[Proc]) -> None:
    """Stop the stubs among ``procs``: they cannot exit by themselves any more, but a SIGKILL ends them."""
    for p in procs:
        if p.name == STUB:
            os.kill(p.pid, signal.SIGSTOP)


def instance(wrapper: subprocess.Popen) -> set[Proc]:
    """Every process of the instance that ``wrapper`` runs: its server's process group, after checking
    that the server has such a group and that each of the server's children is in it."""
    everything = processes()
    (server,) = [p for p in everything if p.parent == wrapper.pid and p.name == "tritonserver"]
    assert server.group == server.pid, "tritonserver is not the leader of a process group of its own"
    members = {p for p in everything if p.group == server.pid and p.state != "Z"}
    assert {p for p in everything if p.parent == server.pid and p.state != "Z"} <= members
    assert any(p.name == STUB for p in members), "no python backend stub: is u2netp loaded?"
    return members


@dataclass
class Instance:
    port: int
    wrapper: subprocess.Popen
    client: grpcclient.InferenceServerClient

    @classmethod
    def start(cls, port: int) -> Instance:
        wrapper = start_triton(port)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port + 1}")
        client.load_model("u2netp")
        return cls(port, wrapper, client)

    def stop(self) -> None:
        self.client.close()
        if self.wrapper.poll() is None:
            self.wrapper.terminate()
            self.wrapper.wait(timeout=30)

    def segment(self, image: np.ndarray) -> None:
        tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        result = self.client.infer("u2netp", [tensor], outputs=[grpcclient.InferRequestedOutput("MASK")],
                                   client_timeout=10)
        assert result.as_numpy("MASK").shape == (1, 320, 320)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((320, 320)))[np.newaxis]


@pytest.fixture(scope="module")
def survivor(photo):
    assert (ROOT / "var" / "model-repository" / "u2netp").is_dir(), "u2netp is not installed: run `make weights`"
    survivor = Instance.start(SURVIVOR)
    try:
        survivor.segment(photo)
        yield survivor
    finally:
        survivor.stop()


@pytest.fixture
def victim(survivor, photo):
    victim = Instance.start(VICTIM)
    try:
        victim.segment(photo)
        yield victim
    finally:
        victim.stop()


def serve_while_gone(survivor: Instance, photo: np.ndarray, killed: set[Proc]) -> None:
    """``survivor`` answers every request for SERVING_S seconds, and nothing of ``killed`` runs after GONE_S."""
    before = instance(survivor.wrapper)
    start = time.monotonic()
    answered = 0
    while time.monotonic() - start < SERVING_S:
        survivor.segment(photo)  # one request after another: the deadline bounds the loop
        answered += 1
    while (left := running(killed)) and time.monotonic() - start < GONE_S:
        time.sleep(0.1)  # a poll of the process table
    assert not left, f"left running after the kill: {sorted((p.pid, p.name) for p in left)}"
    assert answered >= SERVING_S, f"the other instance answered only {answered} requests in {SERVING_S} s"
    assert instance(survivor.wrapper) == before, "the other instance lost or changed a process"


def test_instances_share_no_backend_file(survivor, victim):
    stubs = [{os.readlink(f"/proc/{p.pid}/exe") for p in instance(i.wrapper) if p.name == STUB}
             for i in (survivor, victim)]
    assert all(stubs) and stubs[0].isdisjoint(stubs[1]), stubs


def test_killed_server_takes_its_stubs_and_the_other_instance_serves_on(survivor, victim, photo):
    killed = instance(victim.wrapper)
    (server,) = [p for p in killed if p.name == "tritonserver"]
    stop_stubs(killed)
    os.kill(server.pid, signal.SIGKILL)
    assert victim.wrapper.wait(timeout=GONE_S) == 128 + signal.SIGKILL  # reported as the server's end
    # Restarted, as supervisord would, with fresh copies of the backend's files.
    shutil.rmtree(ROOT / "var" / "triton" / str(VICTIM) / "backends")
    victim.wrapper = start_triton(VICTIM)
    serve_while_gone(survivor, photo, killed)


def test_killed_wrapper_takes_its_server_and_stubs_and_the_other_instance_serves_on(survivor, victim, photo):
    killed = instance(victim.wrapper)
    stop_stubs(killed)
    victim.wrapper.send_signal(signal.SIGKILL)
    victim.wrapper.wait(timeout=GONE_S)
    serve_while_gone(survivor, photo, killed)


def test_stopped_instance_ends_gracefully_with_nothing_left(victim):
    """SIGTERM to the wrapper, as supervisord and own_triton stop it: the server unloads its models and exits."""
    stopped = instance(victim.wrapper)
    victim.wrapper.terminate()
    assert victim.wrapper.wait(timeout=30) == 0
    assert not running(stopped)
