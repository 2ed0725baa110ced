"""``photocraft-notifier``: serve job events over WebSockets with uvicorn."""

import uvicorn

from photocraft_common import logs, telemetry

from .app import create_app
from .settings import NotifierSettings


def main() -> None:
    settings = NotifierSettings()
    logs.configure("notifier", settings.log_level, settings.log_format)
    telemetry.setup_tracing("notifier", settings)
    uvicorn.run(telemetry.instrument_app(create_app(settings)), host=settings.host, port=settings.port, log_config=None,
                proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies)


if __name__ == "__main__":
    main()
