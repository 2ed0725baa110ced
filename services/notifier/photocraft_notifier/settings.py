from photocraft_common.settings import PlatformSettings


class NotifierSettings(PlatformSettings):
    host: str = "127.0.0.1"
    port: int = 8081
    # Seconds without events after which a heartbeat message is sent.
    heartbeat_s: float = 15.0
    # Live events waiting for one client; a client further behind is told to resync.
    send_queue: int = 256
    # Seconds one message may take to reach a client before it is disconnected.
    send_timeout_s: float = 30.0
    # Redis connections of one notifier process (one holds the live feed).
    redis_connections: int = 64
