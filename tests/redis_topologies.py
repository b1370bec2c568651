"""Real Redis topologies on loopback for the tests: a 3-master Redis Cluster (with or without a
replica per master), and a master + replica watched by 3 Sentinels. Every process is Debian's
``redis-server`` (``--sentinel`` for the Sentinels), on free ports, with its files in a folder of the
test's own; readiness is read from the servers themselves (CLUSTER INFO, CLUSTER NODES, INFO
replication, SENTINEL ...), never assumed after a sleep."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

from tests.support import ServerExited, free_port, need, poll, redis_argv, start_server, stop_process

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000  # a Sentinel calls the master down after this long without an answer
FAILOVER_TIMEOUT_MS = 3000
CLUSTER_NODE_TIMEOUT_MS = 1000  # with replicas: a master silent this long is failed over


def _need_redis() -> None:
    need(bool(shutil.which("redis-server")), "redis-server is not installed")
    need(bool(shutil.which("redis-cli")), "redis-cli is not installed")


def _info(port: int, section: str, password: str | None = None) -> dict[str, str]:
    with redis.Redis(port=port, password=password, socket_timeout=1, decode_responses=True) as client:
        return {k: str(v) for k, v in client.info(section).items()}


class ClusterOf3:
    """Three masters splitting the 16 384 slots, ``redis-cli --cluster create``d. With ``replicas=1``
    each master has a replica (six nodes) and a short ``cluster-node-timeout``, so that a killed master
    is replaced by its replica within a few seconds (``kill_master_of`` then ``wait_promoted``)."""

    def __init__(self, folder: Path, replicas: int = 0) -> None:
        _need_redis()
        self.folder = folder
        self.replicas = replicas
        # Without replicas a short timeout buys nothing and a busy machine could trip it; with them it
        # is how long a silent master goes before the others call it failed and its replica takes over.
        self.node_timeout_ms = CLUSTER_NODE_TIMEOUT_MS if replicas else 2000
        # Every node's port and its cluster bus port, all distinct: free_port() only finds a port free now, so
        # a bus port picked while the next node had not bound yet could be that node's (it then fails to start:
        # once, "Connection reset by peer" while creating the cluster).
        ports: list[int] = []
        while len(ports) < 2 * 3 * (1 + replicas):
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.ports, self.bus_ports = ports[:len(ports) // 2], ports[len(ports) // 2:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> ClusterOf3:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            conf = self.folder / f"nodes-{port}.conf"
            self.procs[port] = start_server(redis_argv(port) + [
                "--cluster-enabled", "yes", "--cluster-config-file", str(conf), "--dir", str(self.folder),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # a replica writes the snapshot it syncs from to disk even with --save "": one file each
                "--dbfilename", f"dump-{port}.rdb",
                # the bus port defaults to port + 10000, which may be taken or above 65535: a free one
                "--cluster-port", str(bus_port)], port)
        self._create()
        poll(lambda: all(_info_cluster(p) == "ok" for p in self.ports), 30, "cluster_state:ok on every node")
        if self.replicas:
            poll(self._replicas_in_sync, 60, "every replica known to every node and in sync with its master")
        return self

    def _create(self, attempts: int = 3) -> None:
        """``redis-cli --cluster create``, again on fresh nodes if it fails (once in a CI run it exited 1
        on a loaded machine; what it printed is in the error if every attempt fails)."""
        argv = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        for attempt in range(1, attempts + 1):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode == 0:
                return
            if attempt == attempts:
                raise AssertionError(f"{' '.join(argv)} exited {done.returncode} {attempts} times; the last "
                                     f"printed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
            for port in self.ports:  # back to empty, unconfigured nodes for the next attempt
                with redis.Redis(port=port, socket_timeout=5) as client:
                    try:
                        client.flushall()
                    except redis.ResponseError:  # a replica is read-only; the reset below empties it
                        pass
                    client.execute_command("CLUSTER", "RESET", "HARD")

    def _replicas_in_sync(self) -> bool:
        for port in self.ports:
            nodes = _cluster_nodes(port)
            if sum("slave" in n.flags for n in nodes) != 3 * self.replicas:
                return False
        replicas = [n.port for n in _cluster_nodes(self.ports[0]) if "slave" in n.flags]
        return all(_info(p, "replication").get("master_link_status") == "up" for p in replicas)

    def master_of(self, key: str, port: int | None = None) -> int:
        """The port of the master serving ``key``'s slot, as node ``port`` (default: a live one) sees it."""
        slot = key_slot(key.encode())
        nodes = _cluster_nodes(port or next(iter(self.procs)))
        return next(n.port for n in nodes if "master" in n.flags and "fail" not in n.flags and slot in n.slots)

    def kill_master_of(self, key: str) -> int:
        """SIGKILL the master serving ``key``'s slot; returns its port."""
        port = self.master_of(key)
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)
        return port

    def wait_promoted(self, key: str, old_port: int, deadline_s: float) -> int:
        """The port of the replica promoted in place of ``old_port``, once every live node names it the
        master of ``key``'s slot, that server says it is a master, and every live node says the cluster
        is ok."""
        def promoted() -> int | None:
            owners = {self.master_of(key, port) for port in self.procs}
            if len(owners) != 1 or old_port in owners:
                return None
            port = owners.pop()
            if _info(port, "replication").get("role") != "master":
                return None
            return port if all(_info_cluster(p) == "ok" for p in self.procs) else None
        return int(poll(promoted, deadline_s, "the cluster promoting the replica"))

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 10)


@dataclass(frozen=True)
class _Node:
    port: int
    flags: frozenset[str]
    slots: frozenset[int]


def _cluster_nodes(port: int) -> list[_Node]:
    """CLUSTER NODES of node ``port``: each node's port, flags and slots (importing/migrating marks skipped)."""
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        slots: set[int] = set()
        for spec in fields[8:]:
            if spec.startswith("["):
                continue
            low, _, high = spec.partition("-")
            slots.update(range(int(low), int(high or low) + 1))
        address = fields[1].split("@", 1)[0]
        nodes.append(_Node(int(address.rsplit(":", 1)[1]), frozenset(fields[2].split(",")), frozenset(slots)))
    return nodes


def _info_cluster(port: int) -> str:
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        text = str(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.split() if ":" in line).get("cluster_state", "")


class SentinelSet:
    """A master, one replica, and three Sentinels (quorum 2) with a short down-after and failover
    timeout, so a killed master is replaced within a few seconds. With ``password`` the data nodes
    require it (``requirepass``/``masterauth``) and the Sentinels require ``sentinel_password``."""

    def __init__(self, folder: Path, password: str | None = None, sentinel_password: str | None = None) -> None:
        _need_redis()
        self.folder = folder
        self.password, self.sentinel_password = password, sentinel_password
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports: list[int] = []  # chosen as each Sentinel starts (see start)
        self.data: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) \
            + f"/{MASTER_NAME}/0"

    def start(self) -> SentinelSet:
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        # A replica writes the snapshot it syncs from to disk even with --save "": keep it in the folder.
        auth += ["--dir", str(self.folder)]
        self.data[self.master_port] = start_server(
            redis_argv(self.master_port) + auth + ["--dbfilename", f"dump-{self.master_port}.rdb"], self.master_port)
        self.data[self.replica_port] = start_server(
            redis_argv(self.replica_port) + auth + ["--dbfilename", f"dump-{self.replica_port}.rdb",
                                                     "--replicaof", "127.0.0.1", str(self.master_port)],
            self.replica_port)
        poll(lambda: _info(self.replica_port, "replication", self.password).get("master_link_status") == "up", 30,
             "the replica in sync with the master")
        refused = 0
        while len(self.sentinel_ports) < 3:
            # Ports are chosen just before each start: the replica's sync and the Sentinels' own links open
            # connections whose local ports could take a port chosen earlier. One taken meanwhile: next port.
            port = free_port()
            conf = self.folder / f"sentinel-{port}.conf"  # a Sentinel rewrites its own file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                + (f"sentinel auth-pass {MASTER_NAME} {self.password}\n" if self.password else "")
                + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else ""))
            try:
                self.sentinels.append(start_server(["redis-server", str(conf), "--sentinel"], port))
            except ServerExited:
                refused += 1
                if refused > 3:  # not a taken port: a Sentinel that cannot start at all
                    raise
                continue
            self.sentinel_ports.append(port)
        # A failover needs each Sentinel to know the replica and the two other Sentinels (hello messages).
        # Hello messages go out every 2 s; a busy machine needs longer than an idle one.
        poll(self._sentinels_acquainted, 60, "every Sentinel knowing the replica and the other Sentinels")
        return self

    def _sentinels_acquainted(self) -> bool:
        for port in self.sentinel_ports:
            with self._sentinel(port) as s:
                if len(s.sentinel_slaves(MASTER_NAME)) < 1 or len(s.sentinel_sentinels(MASTER_NAME)) < 2:
                    return False
        return True

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password, socket_timeout=1, decode_responses=True)

    def master_addr(self, sentinel_port: int | None = None) -> tuple[str, int]:
        with self._sentinel(sentinel_port or self.sentinel_ports[0]) as s:
            host, master_port = s.sentinel_get_master_addr_by_name(MASTER_NAME)
        return str(host), int(master_port)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        _, port = self.master_addr()
        proc = self.data.pop(port)
        proc.kill()
        proc.wait(10)
        return port

    def wait_failover(self, old_port: int, deadline_s: float) -> int:
        """The new master's port, once every Sentinel names a master other than ``old_port`` and that
        server says it is a master."""
        def promoted() -> int | None:
            ports = {self.master_addr(p)[1] for p in self.sentinel_ports}
            if len(ports) != 1 or old_port in ports:
                return None
            port = ports.pop()
            return port if _info(port, "replication", self.password).get("role") == "master" else None
        return int(poll(promoted, deadline_s, "the Sentinels promoting the replica"))

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.data.values()]:
            stop_process(proc, 10)
