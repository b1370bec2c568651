"""A configured URL without its credentials, by parsing (never by pattern): for /status, logs and errors.

Apart from ``common.logs`` because the configuration itself needs it (``common.camera_spec`` names a
camera's source in its errors), and logs imports the configuration.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# A query parameter whose value is a secret (`?password=`, `?token=`, `?api_key=`, `?pass=`).
_SECRET_PARAMS = re.compile(r"(?i)(authorization|api[_-]?key|token|password|secret|pass)")


def mask_url(url: str) -> str:
    """A configured URL (``REDIS_URL``, ``MQTT_URL``, …) for status and logs, parsed: the whole user-info
    becomes ``***`` (everything up to the authority's last "@", as ``urlsplit`` and redis-py read it),
    and so does the value of any query parameter that names a secret (``?password=``). A URL whose
    password holds an unencoded "/", "?" or "#" does not parse as meant; then everything up to its last
    "@" is hidden."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    elif "@" in url.partition("://")[2]:
        return f"{parts.scheme}://***@{url.rpartition('@')[2]}" if parts.scheme else "***"
    query = parts.query
    if query:
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v)
                           for k, v in parse_qsl(query, keep_blank_values=True)], quote_via=quote, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
