"""Where fleet state lives: Redis (shared by every hub, survives a hub restart) or memory (one hub).

Both stores behave the same; tests run one suite through both. Redis layout (prefix
``{REDIS_KEY_PREFIX + fleet}:``, e.g. ``{hgr:fleet}:edges``: the braces are a Redis Cluster hash tag,
so every fleet key lives in one slot and the scripts, which touch an edge's keys, the index and (the
sweep) every edge, run on a cluster too; the price is that the whole fleet state sits on one shard):

- ``edges``: set of known edge ids;
- ``edge:{id}``: hash with status, reason, session, birth_seq, version, model, capabilities, last_seen,
  online_since, status_at, seq_lo/seq_hi/hole_at (sequence tracking), snap_seq + snapshot (latest
  metrics), msgs, dups, gaps, events, last_event;
- ``pending:{id}``: zset of metrics seqs received above the contiguous watermark;
- ``quota:{window}``: hash key name → frames in that window (expires after it);
- ``claim:{name}``: one-shot markers so only one hub sends a given command.

Every read-modify-write is a Lua script (fleet_*.lua), so hubs flushing the same edge never race.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, fields
from importlib.resources import files
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster

from hgr.hub.fleet_logic import EdgeBatch, SeqState, StatusMsg, apply_seqs
from hgr.hub.redis_conn import Client, text

CLUSTER_CONCURRENCY = 32  # scripts in flight at once on a Redis Cluster (below the client's 100 connections)
# Edges per pipeline (a hash each when reading the fleet, a script each in a flush): building or parsing one
# holds the loop a few ms at most.
EDGES_PER_PIPELINE = 200


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: list[int]
    duplicates: int
    lost: int


class FleetStore(Protocol):
    async def apply_status(self, edge_id: str, msg: StatusMsg, now: float) -> bool: ...

    async def apply_batch(self, edge_id: str, batch: EdgeBatch, now: float, grace_s: float) -> IngestResult: ...

    async def apply_batches(self, batches: dict[str, EdgeBatch], now: float,
                            grace_s: float) -> dict[str, IngestResult]: ...

    async def add_key_frames(self, window: int, counts: dict[str, int], ttl_s: float) -> dict[str, int]: ...

    async def claim(self, name: str, ttl_s: float) -> bool: ...

    async def edges(self) -> dict[str, dict[str, str]]: ...

    async def edge(self, edge_id: str) -> dict[str, str] | None: ...

    async def sweep(self, now: float, stale_after_s: float, forget_after_s: float) -> tuple[list[str], list[str]]: ...


def _snapshot_text(batch: EdgeBatch) -> str:
    return json.dumps(batch.snapshot, separators=(",", ":")) if batch.snapshot is not None else ""


def _event_text(batch: EdgeBatch) -> str:
    return json.dumps(batch.last_event, separators=(",", ":")) if batch.last_event is not None else ""


class MemoryFleetStore:
    """One hub's state in dicts (no REDIS_URL): same rules as the Lua scripts."""

    def __init__(self) -> None:
        self._edges: dict[str, dict[str, str]] = {}
        self._seqs: dict[str, SeqState] = {}
        self._quota: dict[int, dict[str, int]] = {}
        self._claims: dict[str, float] = {}

    async def apply_status(self, edge_id: str, msg: StatusMsg, now: float) -> bool:
        h = self._edges.get(edge_id, {})
        h.setdefault("first_seen", str(now))  # as the scripts' HSETNX: before any check, applied or not
        if msg.online:
            if h.get("session") == msg.session \
                    and (int(h.get("conn", 0)), int(h.get("birth_seq", 0))) >= (msg.conn, msg.birth_seq):
                return False
            if h.get("session") != msg.session:
                self._seqs[edge_id] = SeqState(msg.session, msg.metrics_seq, msg.metrics_seq)
                h.update(session=msg.session, snap_seq="0")
            if h.get("status") != "online":
                h["online_since"] = str(now)
            h.update(status="online", reason=msg.reason, birth_seq=str(msg.birth_seq), conn=str(msg.conn),
                     version=msg.version,
                     model=msg.model, capabilities=msg.capabilities,
                     metrics_interval_s=str(msg.metrics_interval_s), status_at=str(now), last_seen=str(now))
        else:
            if h.get("session") not in (None, msg.session) or h.get("status") == "offline" \
                    or msg.conn < int(h.get("conn", 0)):
                return False
            h.update(status="offline", reason=msg.reason, status_at=str(now), session=msg.session)
        self._edges[edge_id] = h
        return True

    async def apply_batches(self, batches: dict[str, EdgeBatch], now: float,
                            grace_s: float) -> dict[str, IngestResult]:
        return {e: await self.apply_batch(e, b, now, grace_s) for e, b in batches.items()}

    async def apply_batch(self, edge_id: str, batch: EdgeBatch, now: float, grace_s: float) -> IngestResult:
        h = self._edges.setdefault(edge_id, {})
        h.setdefault("first_seen", str(now))
        outcome = None
        if batch.seqs:
            state = self._seqs.setdefault(edge_id, SeqState())
            state.session = h.get("session", state.session)
            old_session = h.get("session")
            outcome = apply_seqs(state, batch.session, batch.seqs, now, grace_s)
            if outcome.reset:
                h.update(session=batch.session, snap_seq="0", conn="0")
            for field, n in (("msgs", len(outcome.accepted)), ("dups", outcome.duplicates),
                             ("gaps", outcome.lost)):
                if n:
                    h[field] = str(int(h.get(field, 0)) + n)
            if batch.snapshot is not None and batch.snap_seq > int(h.get("snap_seq", 0)):
                h.update(snap_seq=str(batch.snap_seq), snapshot=_snapshot_text(batch))
            if "status" not in h or (h["status"] == "offline" and h.get("reason") == "stale"
                                     and old_session == batch.session):
                h.update(status="online", reason="seen", status_at=str(now), online_since=str(now))
        if batch.events:
            h["events"] = str(int(h.get("events", 0)) + batch.events)
            if batch.last_event is not None:
                h["last_event"] = _event_text(batch)
        if float(h.get("last_seen", 0)) < now:
            h["last_seen"] = str(now)
        if outcome is None:
            return IngestResult([], 0, 0)
        return IngestResult(outcome.accepted, outcome.duplicates, outcome.lost)

    async def add_key_frames(self, window: int, counts: dict[str, int], ttl_s: float) -> dict[str, int]:
        for old in [w for w in self._quota if w < window - 1]:
            del self._quota[old]
        bucket = self._quota.setdefault(window, {})
        for key, n in counts.items():
            bucket[key] = bucket.get(key, 0) + n
        return {key: bucket[key] for key in counts}

    async def claim(self, name: str, ttl_s: float) -> bool:
        now = time.monotonic()
        if self._claims.get(name, 0.0) > now:
            return False
        self._claims = {k: v for k, v in self._claims.items() if v > now}
        self._claims[name] = now + ttl_s
        return True

    async def edges(self) -> dict[str, dict[str, str]]:
        return {edge_id: dict(h) for edge_id, h in self._edges.items()}

    async def edge(self, edge_id: str) -> dict[str, str] | None:
        h = self._edges.get(edge_id)
        return dict(h) if h is not None else None

    async def sweep(self, now: float, stale_after_s: float, forget_after_s: float) -> tuple[list[str], list[str]]:
        staled, forgotten = [], []
        for edge_id, h in list(self._edges.items()):
            last_seen, status_at = float(h.get("last_seen", 0)), float(h.get("status_at", 0))
            last_word = max(last_seen, status_at)
            # brief: heard from for less than stale_after (fleet_sweep.lua says why)
            brief = "first_seen" in h and last_word - float(h["first_seen"]) < stale_after_s
            forget = False
            if h.get("status") == "online" and now - last_seen > stale_after_s:
                if brief:
                    forget = True
                else:
                    h.update(status="offline", reason="stale", status_at=str(now))
                    staled.append(edge_id)
            elif h.get("status") != "online":
                quiet = now - last_word
                forget = (brief and quiet > stale_after_s) or (forget_after_s > 0 and quiet > forget_after_s)
            if forget:
                del self._edges[edge_id]
                self._seqs.pop(edge_id, None)
                forgotten.append(edge_id)
        return staled, forgotten



STATUS_ARGS = tuple(f.name for f in fields(StatusMsg) if f.name != "online")


class RedisFleetStore:
    """Shared fleet state in a ``redis.asyncio`` Redis or RedisCluster client (bytes or decoded responses)."""

    def __init__(self, redis: Client, key_prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{{{key_prefix}fleet}}:"  # one hash tag for all: see the module docstring
        self.index = self.prefix + "edges"
        scripts = files("hgr.hub")
        self._ingest = redis.register_script(scripts.joinpath("fleet_ingest.lua").read_text())
        self._status = redis.register_script(scripts.joinpath("fleet_status.lua").read_text())
        self._sweep = redis.register_script(scripts.joinpath("fleet_sweep.lua").read_text())

    def _keys(self, edge_id: str) -> list[str]:
        return [f"{self.prefix}edge:{edge_id}", f"{self.prefix}pending:{edge_id}", self.index]

    async def apply_status(self, edge_id: str, msg: StatusMsg, now: float) -> bool:
        # fleet_status.lua's ARGV: the message's fields in StatusMsg's order (tests/test_contracts.py holds the
        # script's header, StatusMsg and the declarations to the same names).
        fields = (getattr(msg, name) for name in STATUS_ARGS)
        applied = await self._status(keys=self._keys(edge_id), args=[
            edge_id, repr(now), "1" if msg.online else "0", *(repr(v) if isinstance(v, float) else v for v in fields)])
        return bool(int(applied))

    async def apply_batches(self, batches: dict[str, EdgeBatch], now: float,
                            grace_s: float) -> dict[str, IngestResult]:
        """Every edge's batch in pipelines of EDGES_PER_PIPELINE (a round trip each, not one per edge)."""
        order = list(batches.items())
        if isinstance(self.redis, RedisCluster):
            replies = await self._ingest_concurrently(order, now, grace_s)
        else:
            replies = []
            # Not all in one: building and parsing a pipeline never yields, and 5 000 edges' scripts in one
            # held the loop ~0.1 s each flush (made-up edges on an open broker: research.abuse row 6).
            for start in range(0, len(order), EDGES_PER_PIPELINE):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for edge_id, batch in order[start:start + EDGES_PER_PIPELINE]:
                        await self._ingest(keys=self._keys(edge_id),
                                           args=self._ingest_args(edge_id, batch, now, grace_s), client=pipe)
                    replies += await pipe.execute()
        return {edge_id: self._result(reply) for (edge_id, _), reply in zip(order, replies)}

    async def _ingest_concurrently(self, order: list[tuple[str, EdgeBatch]], now: float,
                                   grace_s: float) -> list[Any]:
        """redis-py refuses EVALSHA in a cluster pipeline: the scripts go out concurrently instead, a
        bounded number at a time (each in flight holds one of the client's pooled connections)."""
        replies: list[Any] = []
        for start in range(0, len(order), CLUSTER_CONCURRENCY):
            replies += await asyncio.gather(*(
                self._ingest(keys=self._keys(edge_id), args=self._ingest_args(edge_id, batch, now, grace_s))
                for edge_id, batch in order[start:start + CLUSTER_CONCURRENCY]))
        return replies

    async def apply_batch(self, edge_id: str, batch: EdgeBatch, now: float, grace_s: float) -> IngestResult:
        return (await self.apply_batches({edge_id: batch}, now, grace_s))[edge_id]

    @staticmethod
    def _ingest_args(edge_id: str, batch: EdgeBatch, now: float, grace_s: float) -> list[Any]:
        return [edge_id, repr(now), repr(grace_s), batch.session, batch.snap_seq, _snapshot_text(batch),
                batch.events, _event_text(batch), ",".join(map(str, batch.seqs))]

    @staticmethod
    def _result(reply: list[Any]) -> IngestResult:
        accepted = text(reply[3])
        return IngestResult([int(s) for s in accepted.split(",")] if accepted else [], int(reply[0]), int(reply[1]))

    async def add_key_frames(self, window: int, counts: dict[str, int], ttl_s: float) -> dict[str, int]:
        key = f"{self.prefix}quota:{window}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            pipe.expire(key, max(1, int(ttl_s) + 1))
            replies = await pipe.execute()
        return {name: int(total) for name, total in zip(counts, replies)}

    async def claim(self, name: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(f"{self.prefix}claim:{name}", "1", nx=True,
                                         px=max(1, int(ttl_s * 1000))))

    async def edges(self) -> dict[str, dict[str, str]]:
        ids = sorted(text(m) for m in await self.redis.smembers(self.index))
        out: dict[str, dict[str, str]] = {}
        # In pipelines of EDGES_PER_PIPELINE: redis-py parses a pipeline's replies without yielding, and 20 000
        # hashes in one held the hub's loop (REST, ingest) for 0.6 s every gauge refresh.
        for start in range(0, len(ids), EDGES_PER_PIPELINE):
            chunk = ids[start:start + EDGES_PER_PIPELINE]
            async with self.redis.pipeline(transaction=False) as pipe:
                for edge_id in chunk:
                    pipe.hgetall(f"{self.prefix}edge:{edge_id}")
                hashes = await pipe.execute()
            out.update((edge_id, {text(k): text(v) for k, v in h.items()}) for edge_id, h in zip(chunk, hashes) if h)
        return out

    async def edge(self, edge_id: str) -> dict[str, str] | None:
        h = await self.redis.hgetall(f"{self.prefix}edge:{edge_id}")
        return {text(k): text(v) for k, v in h.items()} if h else None

    async def sweep(self, now: float, stale_after_s: float, forget_after_s: float) -> tuple[list[str], list[str]]:
        reply = [text(x) for x in await self._sweep(keys=[self.index],
                                                    args=[repr(now), repr(stale_after_s), repr(forget_after_s),
                                                          self.prefix])]
        cut = reply.index("|")
        return reply[:cut], reply[cut + 1:]
