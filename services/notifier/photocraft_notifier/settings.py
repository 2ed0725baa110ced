from photocraft_common.settings import PlatformSettings


class NotifierSettings(PlatformSettings):
    host: str = "127.0.0.1"
    port: int = 8081
    # Seconds without events after which a heartbeat message is sent.
    heartbeat_s: float = 15.0
