"""The notifier: job events to clients over WebSockets."""
