"""GET a local endpoint (``/metrics``, ``/healthz``) as a scraper would."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(port: int, path: str) -> tuple[int, str] | None:
    """Status and body of ``GET http://127.0.0.1:<port><path>`` (error statuses too); None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None
