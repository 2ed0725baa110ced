"""Refusals, as RFC 9457 problem details.

The gateway answers them as ``application/problem+json`` with ``status``; the
scheduler turns a refused partner request into a ``failed`` event whose code
is ``slug``. Each slug is documented in docs/api.md.
"""

from __future__ import annotations


class Problem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers
