"""The gateway: Photocraft's HTTP API for clients."""
