"""``photocraft-gateway``: serve the HTTP API with uvicorn."""

import uvicorn

from photocraft_common import logs, telemetry

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    logs.configure("gateway", settings.log_level, settings.log_format)
    telemetry.setup_tracing("gateway", settings)
    uvicorn.run(telemetry.instrument_app(create_app(settings)), host=settings.host, port=settings.port,
                log_config=None, proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies)


if __name__ == "__main__":
    main()
