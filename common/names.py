"""Names that become an MQTT topic level, a Redis key part and a metric label at once.

In the base room because configuration (``EDGE_ID``) checks them as well as the messaging room (topics)
and the hub (edge ids read off the wire).
"""

from __future__ import annotations


def valid_edge_id(edge_id: str) -> bool:
    """1-64 printable characters, no spaces, none of ``+ # /``: an edge id is one topic level, a Redis
    key part and a metric label on the hub."""
    return 0 < len(edge_id) <= 64 and all(ord(c) > 32 for c in edge_id) and not any(c in edge_id for c in "+#/")
