"""storage-janitor: everything of a job is purged at its deadline (created_at + the lifetime, 24 h)."""
