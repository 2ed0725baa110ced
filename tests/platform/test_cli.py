"""The ``photocraft`` command and the SDK against the running platform: a folder of photos through
a batch with progress bars, a single photo with JSON output, the gateway's problems as messages,
and following a job's events across a connection dropped mid-way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from PIL import Image
from skimage import data as samples

from photocraft_sdk import Client

from .helpers import GATEWAY, fresh, png_bytes

PHOTOCRAFT = Path(sys.executable).parent / "photocraft"


def photocraft(*args: str | Path, api_key: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOCRAFT_URL": GATEWAY, "PHOTOCRAFT_API_KEY": api_key, "XDG_CONFIG_HOME": str(home)}
    return subprocess.run([PHOTOCRAFT, *map(str, args)], env=env, capture_output=True, text=True, timeout=280)


def test_a_folder_of_photos_through_a_batch(tmp_path, api_key):
    folder, out = tmp_path / "photos", tmp_path / "cutouts"
    folder.mkdir()
    photos = {"astronaut.png": samples.astronaut(), "coffee.jpg": samples.coffee(), "chelsea.png": samples.chelsea()}
    for name, pixels in photos.items():
        Image.fromarray(fresh(pixels)).save(folder / name, quality=95)

    run = photocraft("edit", folder, "--op", "remove-background", "-o", out, api_key=api_key, home=tmp_path)

    assert run.returncode == 0, run.stderr
    for name, pixels in photos.items():
        path = out / f"{Path(name).stem}-remove-background.png"
        assert f"{name} -> {path}" in run.stdout
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGBA", pixels.shape[1::-1])
            low, high = image.getchannel("A").getextrema()
        assert low < 16 and high > 240, f"{name}: alpha {low}..{high}; no background removed"
        assert name in run.stderr  # its progress bar
    assert "all photos" in run.stderr and "100%" in run.stderr and "3/3 ended" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{Path(n).stem}-remove-background.png" for n in photos)


def test_one_photo_with_json_output(tmp_path, api_key, astronaut):
    photo = tmp_path / "me.png"
    Image.fromarray(fresh(astronaut)).save(photo)

    run = photocraft("--json", "edit", photo, "--op", "remove-background", "--background", "#00ff00",
                     "-o", tmp_path / "cut.jpg", api_key=api_key, home=tmp_path)

    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["photo"], summary["status"], summary["outputs"]) == ("me.png", "completed",
                                                                          [str(tmp_path / "cut.jpg")])
    with Image.open(tmp_path / "cut.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))

    status = photocraft("status", summary["job_id"], api_key=api_key, home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"job {summary['job_id']} remove-background: completed" in status.stdout


def test_the_gateways_problems_are_told(tmp_path, api_key, astronaut):
    photo = tmp_path / "me.png"
    Image.fromarray(astronaut).save(photo)

    run = photocraft("edit", photo, "--op", "remove-background", "-o", tmp_path / "cut.jpg",
                     api_key=api_key, home=tmp_path)  # a transparent background cannot be a JPEG

    assert run.returncode == 1
    assert "Invalid parameters (422 invalid-params)" in run.stderr and "png or webp" in run.stderr
    assert not (tmp_path / "cut.jpg").exists()

    run = photocraft("status", "no-such-job", api_key=api_key, home=tmp_path)
    assert run.returncode == 1 and "404 job-not-found" in run.stderr


class DroppingRelay:
    """A TCP relay to the notifier that breaks its first connection for real: it passes the WebSocket
    handshake and ``frames`` whole frames from the server, then part of the next one, then resets both
    sides. Later connections are relayed untouched."""

    def __init__(self, target: tuple[str, int], frames: int) -> None:
        self.target, self.frames, self.connections = target, frames, 0

    async def __aenter__(self) -> DroppingRelay:
        self.server = await asyncio.start_server(self.relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()

    async def relay(self, client_reader, client_writer) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        pumps = [asyncio.create_task(self.pump(client_reader, server_writer)),
                 asyncio.create_task(self.pump_down(server_reader, client_writer, cut=self.connections == 1))]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (client_writer, server_writer):
            writer.transport.abort()

    @staticmethod
    async def pump(reader, writer) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def pump_down(self, reader, writer, cut: bool) -> None:
        if not cut:
            return await self.pump(reader, writer)
        pending, passed, handshake = b"", 0, True
        while data := await reader.read(65536):
            pending += data
            if handshake and b"\r\n\r\n" in pending:
                head, pending = pending.split(b"\r\n\r\n", 1)
                writer.write(head + b"\r\n\r\n")
                handshake = False
            while not handshake and (size := frame_size(pending)) and len(pending) >= size:
                if passed == self.frames:
                    writer.write(pending[:size // 2])
                    await writer.drain()
                    return
                writer.write(pending[:size])
                pending, passed = pending[size:], passed + 1
            await writer.drain()


def frame_size(buffer: bytes) -> int | None:
    """Bytes of the WebSocket frame at the start of ``buffer`` (RFC 6455 5.2), None until its header is in."""
    if len(buffer) < 2:
        return None
    length, head = buffer[1] & 0x7F, 2 + (4 if buffer[1] & 0x80 else 0)
    if length >= 126:
        extra = 2 if length == 126 else 8
        if len(buffer) < 2 + extra:
            return None
        length, head = int.from_bytes(buffer[2:2 + extra]), head + extra
    return head + length


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def submitted(client: Client, astronaut) -> dict:
    return await client.submit_job("remove-background", ("me.png", png_bytes(fresh(astronaut))))


@pytest.fixture
async def client(api_key):
    async with Client(GATEWAY, api_key, device_tokens=None) as client:
        yield client


async def test_following_survives_a_dropped_connection(client, astronaut):
    job = await submitted(client, astronaut)
    events_host = urlsplit(job["events_url"])
    retries = []
    async with DroppingRelay((events_host.hostname, events_host.port), frames=2) as relay:
        relayed = {**job, "events_url": via(job["events_url"], relay.port)}
        events = [e async for e in client.events(relayed, on_retry=lambda error, delay: retries.append(error))]

    assert relay.connections == 2
    assert [error.after for error in retries] == [2]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "completed" and events[0]["type"] == "received"
    replay = [e async for e in client.events(job)]  # the whole log, straight from the notifier
    assert [(e["seq"], e["type"]) for e in events] == [(e["seq"], e["type"]) for e in replay]


async def test_resuming_by_hand_after_closing(client, astronaut):
    job = await submitted(client, astronaut)
    async with contextlib.aclosing(client.events(job)) as stream:
        first = [await anext(stream), await anext(stream)]
    rest = [e async for e in client.events(job, after=first[-1]["seq"])]
    events = first + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "completed"
    assert (await client.get_job(job["job_id"], job["token"]))["status"] == "completed"
