"""Where the client is pointed and what it remembers between runs.

The gateway's URL comes from ``PHOTOCRAFT_URL`` (default ``http://127.0.0.1:8080``), the API key
from ``PHOTOCRAFT_API_KEY``. Without an API key the gateway hands out a device token; it is kept
per gateway URL in ``config.json`` in the user's config directory (``~/.config/photocraft/`` on
Linux, following ``XDG_CONFIG_HOME``), readable by the user only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from platformdirs import user_config_path

DEFAULT_URL = "http://127.0.0.1:8080"


def default_url() -> str:
    return os.environ.get("PHOTOCRAFT_URL") or DEFAULT_URL


def default_api_key() -> str | None:
    return os.environ.get("PHOTOCRAFT_API_KEY") or None


class DeviceTokens:
    """Device tokens by gateway URL, in a JSON file (``{"device_tokens": {url: token}}``)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or user_config_path("photocraft") / "config.json"

    def _read(self) -> dict:
        try:
            config = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return config if isinstance(config, dict) else {}

    def get(self, url: str) -> str | None:
        return self._read().get("device_tokens", {}).get(url)

    def put(self, url: str, token: str) -> None:
        """Remember ``token`` for ``url``; a file that cannot be written is left alone (OSError is swallowed)."""
        config = self._read()
        config.setdefault("device_tokens", {})[url] = token
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(config, file, indent=2)
        except OSError:
            pass
