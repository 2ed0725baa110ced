"""Contracts, settings and clients shared by every Photocraft service."""
