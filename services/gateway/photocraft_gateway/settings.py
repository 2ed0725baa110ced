from photocraft_common.settings import PlatformSettings


class GatewaySettings(PlatformSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    # Base of the notifier's WebSocket URLs handed to clients.
    events_base_url: str = "ws://127.0.0.1:8081"
    max_upload_bytes: int = 25 * 1024 * 1024
    max_batch_bytes: int = 250 * 1024 * 1024  # a whole batch upload
    # Edits per IP address per 24 h for anonymous devices, so new device tokens do not reset the quota.
    anonymous_ip_daily_quota: int = 5
