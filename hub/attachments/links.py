"""Signed, expiring links to an attachment's bytes, for back offices that fetch files by URL
(Open311 `media_url`): `<public_url>/v1/attachments/<id>/content?expires=<unix>&signature=<hex>`.

The signature is HMAC-SHA256 over "<id>.<expires>" with HUB_ATTACHMENT_URL_KEY (derived from
HUB_INDEX_KEY when unset); the link needs no API key, so it works from any back office.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from hub.errors import BadLinkSignature, LinkExpired


@dataclass(frozen=True)
class LinkSigner:
    key: bytes
    public_url: str
    seconds: int

    def signature(self, attachment_id: str, expires: int) -> str:
        return hmac.new(self.key, f"{attachment_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, attachment_id: str, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + self.seconds
        query = urlencode({"expires": expires, "signature": self.signature(attachment_id, expires)})
        return f"{self.public_url.rstrip('/')}/v1/attachments/{attachment_id}/content?{query}"

    def check(self, attachment_id: str, expires: int, signature: str, now: float | None = None) -> None:
        """Raises BadLinkSignature (403) unless the hub signed exactly this id and expiry, then
        LinkExpired (410) once the expiry has passed."""
        if not hmac.compare_digest(self.signature(attachment_id, expires), signature.lower()):
            raise BadLinkSignature("This link was not signed by the hub, or was changed after signing.")
        if (now if now is not None else time.time()) > expires:
            raise LinkExpired("This link has expired; the back office should ask for the record again.")


def link_key(url_key: str | None, index_key: bytes) -> bytes:
    """The configured key, else one derived from the index key (never the index key itself)."""
    if url_key:
        return url_key.encode()
    return hmac.new(index_key, b"hub attachment links", hashlib.sha256).digest()
