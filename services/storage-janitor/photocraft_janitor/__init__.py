"""storage-janitor: users' photos are deleted once they are older than the TTL (24 h)."""
