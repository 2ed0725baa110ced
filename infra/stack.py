"""Start, stop and inspect the local platform (run by make up / make down / make status).

    python infra/stack.py up       infrastructure, then the database's migrations, topics and bucket, then services
    python infra/stack.py down     stop everything that was started, by PID
    python infra/stack.py status

Processes run under supervisord (infra/supervisord.conf); its PID is in
var/run/supervisord.pid and it tracks its children's PIDs. ``up`` returns once
every part answers, ``down`` once supervisord and its children have exited.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from tenacity import Retrying, stop_after_delay, wait_fixed

from photocraft_common.database import make_engine
from photocraft_common.keyring import Keyring
from photocraft_common.settings import LOCAL_KEYRING, PlatformSettings
from photocraft_common.storage import make_client

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
CONF = ROOT / "infra" / "supervisord.conf"
PIDFILE = VAR / "run" / "supervisord.pid"
BIN = Path(sys.executable).parent

# Every port the stack listens on, all on 127.0.0.1.
PORTS = {
    "kafka": [9092, 9093], "redis": [6379], "s3": [8333, 8888, 9333, 9340],
    "triton": [8000, 8001, 8002], "triton-2": [8100, 8101, 8102], "gateway": [8080, 9430], "notifier": [8081, 9440],
    "gpu-inference": [9400, 9401], "scheduler": [9410], "storage-janitor": [9420],
    "jaeger": [16686, 16685, 4317, 4318, 14269], "postgres": [15432],
}
# Where each service process answers /healthz and /readyz (photocraft_common.health).
HEALTH = {"gateway": 8080, "notifier": 8081, "scheduler": 9410, "storage-janitor": 9420,
          "gpu-inference-0": 9400, "gpu-inference-1": 9401}


def supervisorctl(*args: str, check: bool = True) -> str:
    result = subprocess.run([BIN / "supervisorctl", "-c", CONF, *args],
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"supervisorctl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def supervisord_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def log_tail(name: str, lines: int = 30) -> str:
    path = VAR / "log" / f"{name}.log"
    if not path.exists():
        return f"(no {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(name: str, check, timeout_s: float = 180) -> None:
    """Poll ``check`` until it returns without raising; exit with the log's tail if it never does."""
    started = time.monotonic()
    try:
        for attempt in Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5), reraise=True):
            with attempt:
                check()
    except Exception as exc:
        raise SystemExit(f"{name} did not become ready in {timeout_s:.0f} s: {exc!r}\n"
                         f"--- var/log/{name}.log ---\n{log_tail(name)}") from None
    print(f"  {name:<16} ready ({time.monotonic() - started:.1f} s)")


def check_kafka() -> None:
    """A metadata request answered by the broker means it is serving."""
    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()
    asyncio.run(probe())


def check_http(url: str):
    def check() -> None:
        httpx.get(url, timeout=2).raise_for_status()
    return check


def check_s3() -> None:
    """A bucket listing answered with the local profile's keys (var/s3/security/s3.json, made when
    infra/bin/s3 first starts: settings are read anew each try)."""
    s3 = PlatformSettings().s3
    s3.required_keys()  # S3KeysMissing until infra/bin/s3 has made them
    make_client(s3).list_buckets()


def check_postgres() -> None:
    """A query answered with the local profile's password (var/secrets/postgres-password, made when
    infra/bin/postgres first starts: settings are read anew each try)."""
    async def probe() -> None:
        engine = make_engine(PlatformSettings().database)
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        finally:
            await engine.dispose()
    asyncio.run(probe())


def ensure_keyring(path: Path = LOCAL_KEYRING) -> None:
    """Make this installation's keyring (device tokens, S3 prefixes) at its first start: one random key,
    in a file only its owner reads (0600, in a 0700 folder). An existing one is kept, and checked."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            Keyring.read(path, str(path))
        except ValueError as exc:
            raise SystemExit(f"{exc}: fix it, or delete it to make a new one") from None
        return
    with os.fdopen(fd, "w") as out:
        out.write(Keyring.generate().to_json())
    print(f"made this installation's keyring: {path.relative_to(ROOT)}")


def up() -> None:
    ensure_keyring()
    if supervisord_pid() is None:
        busy = [f"{port} ({name})" for name, ports in PORTS.items() for port in ports if port_in_use(port)]
        if busy:
            raise SystemExit("these ports are taken by processes the stack did not start: "
                             + ", ".join(busy) + "; stop them first")
        for sub in ("log", "run", "redis", "s3", "kafka/data"):
            (VAR / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run([BIN / "supervisord", "-c", CONF], check=True)
        wait_for("supervisord", lambda: supervisorctl("pid"), timeout_s=15)
    print("infrastructure:")
    supervisorctl("start", "infra:*", check=False)
    wait_for("redis", lambda: redis.Redis(host="127.0.0.1", port=6379).ping())
    wait_for("s3", check_s3)
    wait_for("kafka", check_kafka)
    wait_for("triton", check_http("http://127.0.0.1:8000/v2/health/ready"))
    wait_for("triton-2", check_http("http://127.0.0.1:8100/v2/health/ready"))
    wait_for("jaeger", check_http("http://127.0.0.1:16686/api/services"))  # traces; the services run without it
    wait_for("postgres", check_postgres)
    subprocess.run([BIN / "photocraft-bootstrap"], check=True)  # the schema, accounts, topics and bucket
    print("services:")
    supervisorctl("start", "services:*", check=False)
    for name, port in HEALTH.items():  # ready: Kafka, Redis, S3 (and Triton, for gpu-inference) answer it
        wait_for(name, check_http(f"http://127.0.0.1:{port}/readyz"))
    print(supervisorctl("status", check=False), end="")
    print("platform up: gateway http://127.0.0.1:8080 (API docs /docs), "
          "notifier ws://127.0.0.1:8081; logs in var/log/")


def down() -> None:
    pid = supervisord_pid()
    if pid is None:
        print("platform is not running")
        return
    children = [int(p) for p in supervisorctl("pid", "all", check=False).split() if p.isdigit() and p != "0"]
    os.kill(pid, signal.SIGTERM)  # supervisord stops every child, then exits
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(alive(p) for p in [pid, *children]):
        time.sleep(0.3)
    left = [p for p in [pid, *children] if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    print(f"platform stopped ({len(children)} processes{', killed: ' + str(left) if left else ''})")
    held = [port for ports in PORTS.values() for port in ports if port_in_use(port)]
    if held:
        raise SystemExit(f"ports still in use after stopping: {held}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited already
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def status() -> None:
    if supervisord_pid() is None:
        print("platform is not running")
    else:
        print(supervisorctl("status", check=False), end="")


def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection refused while Kafka starts
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    {"up": up, "down": down, "status": status}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
