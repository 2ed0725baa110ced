"""``photocraft-notifier``: serve job events over WebSockets with uvicorn."""

import uvicorn

from photocraft_common import logs

from .app import create_app
from .settings import NotifierSettings


def main() -> None:
    settings = NotifierSettings()
    logs.configure("notifier", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies)


if __name__ == "__main__":
    main()
