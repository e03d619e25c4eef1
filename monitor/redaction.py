"""Secrets in URLs that must never reach a log, a message or a published payload.

Cameras take credentials in the user info (``rtsp://user:pw@cam/``) and, as often, in the query string
(Reolink's ``...&password=``, Foscam's ``pwd=``, tokens of cloud streams). Both the config check and the stream
reader redact with these, so a URL is shown the same way everywhere.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

__all__ = ["query_secrets", "redact_query"]

# A query parameter whose name says it holds a secret: anything with "pass", "pwd", "token", "secret", "key",
# "auth" or "sig" in it (password, passwd, pwd, access_token, api_key, apikey, authkey, signature, ...).
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:pass|pwd|token|secret|key|auth|sig|credential)[A-Za-z0-9_.-]*"
_QUERY_SECRET = re.compile(rf"(?P<head>[?&;](?i:{_SECRET_NAME})=)[^&;#\s'\"]*")


def redact_query(text: str) -> str:
    """``text`` with the value of every secret-looking query parameter (``?password=...``) replaced by ``***``."""
    return _QUERY_SECRET.sub(r"\g<head>***", text)


def query_secrets(url: str) -> list[str]:
    """The values of ``url``'s secret-looking query parameters, as written and percent-decoded (to redact them
    from text that quotes them without their name, such as ffmpeg's error lines)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    found: list[str] = []
    for match in _QUERY_SECRET.finditer("?" + query):
        raw = match.group(0)[len(match.group("head")):]
        found += [raw, unquote_plus(raw)]
    return [s for s in dict.fromkeys(found) if s]
