"""Where Redis is: one server, a master watched by Sentinels, or a Cluster — parsed from one URL.

``REDIS_URL`` takes three forms (``Settings.resolved_redis_url`` also builds the last two from
``REDIS_CLUSTER`` and ``REDIS_SENTINELS``/``REDIS_SENTINEL_MASTER``):

- ``redis://[user:pass@]host:port/db`` (or ``rediss://``, ``unix://``): one server, handed to redis-py as is;
- ``redis+sentinel://[user:pass@]host1:26379,host2:26379/mymaster[/db]``: ask the Sentinels where the
  master named ``mymaster`` is (the password is the master's; the Sentinels are asked without one);
- ``redis+cluster://[user:pass@]host1:7000,host2:7001``: a Redis Cluster, any reachable nodes to start
  from (the client discovers the rest); a cluster has only database 0.

``rediss+sentinel://`` and ``rediss+cluster://`` use TLS to the data nodes. Pure parsing, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    kind: Literal["single", "sentinel", "cluster"]
    url: str  # as configured (masked before it is shown anywhere)
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster startup nodes
    master: str = ""  # the Sentinel service name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """The target of a ``REDIS_URL``; ValueError says what is wrong with a malformed one."""
    if url.startswith(SINGLE_SCHEMES):
        return RedisTarget("single", url)
    kind: Literal["sentinel", "cluster"]
    if url.startswith(SENTINEL_SCHEMES):
        kind = "sentinel"
    elif url.startswith(CLUSTER_SCHEMES):
        kind = "cluster"
    else:
        raise ValueError("expected redis://[:password@]host:port/db, rediss://…, unix://…, "
                         "redis+sentinel://host:port,…/master[/db] or redis+cluster://host:port,…")
    scheme, rest = url.split("://", 1)
    netloc, _, path = rest.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    username, password = _credentials(credentials)
    nodes = _nodes(hosts, DEFAULT_PORTS[kind])
    parts = [p for p in path.split("/") if p]
    master, db = "", 0
    if kind == "sentinel":
        if not parts or len(parts) > 2:
            raise ValueError("a Sentinel URL names its master: redis+sentinel://host:port,…/<master>[/<db>]")
        master = unquote(parts[0])
        db = _db(parts[1]) if len(parts) == 2 else 0
    elif parts and parts != ["0"]:
        raise ValueError("a Redis Cluster has only database 0: redis+cluster://host:port,… (no /db)")
    return RedisTarget(kind, url, nodes, master, db, username, password, tls=scheme.startswith("rediss"))


def _nodes(spec: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """``host[:port],host[:port],…`` (IPv6 as ``[::1]:port``) as (host, port) pairs."""
    nodes = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, tail = item[1:].partition("]")
            port_text = tail.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ValueError(f"{item!r}: expected host[:port]")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"{item!r}: the port must be a number") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{item!r}: the port must be 1…65535")
        nodes.append((host, port))
    if not nodes:
        raise ValueError("no host:port given")
    return tuple(nodes)


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, sep, password = text.partition(":")
    return (unquote(user) or None), (unquote(password) if sep else None)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r}: expected a number")
    return int(text)
