"""``photocraft-gateway``: serve the HTTP API with uvicorn."""

import uvicorn

from photocraft_common import logs

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    logs.configure("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies)


if __name__ == "__main__":
    main()
