"""The worker processes of a pool: spawn, the ready handshake, restart on death, reap.

Each slot's process is started as ``python -m hgr.common.inference.worker <fd>`` (a fresh interpreter,
never a fork of the event-loop process) over a socketpair, sent ``Init``, and is live once it answers
``Ready``. A process that dies is restarted (with back-off if it keeps dying); what it had been sent is
the pool's to fail (``on_exit``). The pool hears of each slot through four callbacks and never
touches a process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hgr.common import metrics
from hgr.common.errors import ModelUnavailable
from hgr.common.inference import messages as m

log = logging.getLogger("hgr.pool")

START_TIMEOUT = 180.0  # seconds for a worker to import its engine and load the model on a loaded machine
DRAIN_TIMEOUT = 10.0


@dataclass(eq=False)
class _Process:
    index: int
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    alive: bool = False  # answered Ready; not yet gone
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # Ready or Fatal arrived (start() waits)
    fatal: str | None = None


class Supervisor:
    def __init__(self, size: int, init: m.Init, *, service: str,
                 on_ready: Callable[[int, m.Ready], None],
                 on_variant: Callable[[int, m.VariantReady], None],
                 on_answer: Callable[[int, m.Result | m.Error], None],
                 on_exit: Callable[[int, bool], None]) -> None:
        """``on_ready(i, msg)``: slot i's process loaded the model (``msg`` says what runs it).
        ``on_variant(i, msg)``: it made another model variant (``msg`` says what runs that one).
        ``on_answer(i, msg)``: a frame's answer.
        ``on_exit(i, was_alive)``: slot i's process is gone (restart follows unless stopping)."""
        self._procs = [_Process(i) for i in range(size)]
        self._init = m.frame(init)
        self._on_ready, self._on_variant, self._on_answer, self._on_exit = on_ready, on_variant, on_answer, on_exit
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.restarts = 0
        self._m_alive = metrics.WORKERS_ALIVE.labels(service)
        self._m_restarts = metrics.WORKER_RESTARTS.labels(service)

    # --- what the pool asks ---

    def send(self, index: int, data: bytearray) -> bool:
        """Write a framed message to slot ``index``'s process if it is live; False if not."""
        p = self._procs[index]
        if not p.alive or p.writer is None:
            return False
        # As a view: Python 3.11's transport sends what the socket takes at once and keeps the rest (most of a
        # camera frame's ~1 MB) as ``data[n:]``, a copy when ``data`` is a bytearray, a view when it is a memoryview.
        p.writer.write(memoryview(data))
        return True

    def alive(self, index: int) -> bool:
        return self._procs[index].alive

    def pid(self, index: int) -> int | None:
        p = self._procs[index]
        return p.proc.pid if p.proc is not None and p.alive else None

    @property
    def alive_count(self) -> int:
        return sum(p.alive for p in self._procs)

    # --- lifecycle ---

    async def start(self) -> None:
        """Start every slot and wait for all to be ready; ModelUnavailable (and nothing left running) if
        one could not load the model or they were not ready within START_TIMEOUT."""
        self._tasks = [asyncio.create_task(self._supervise(p), name=f"hgr-worker-{p.index}") for p in self._procs]
        waits = [asyncio.create_task(p.ready.wait()) for p in self._procs]
        try:
            done, _ = await asyncio.wait(waits, timeout=START_TIMEOUT)
        finally:
            for t in waits:
                t.cancel()
        failed = [p.fatal for p in self._procs if p.fatal] or (
            [] if len(done) == len(waits) else [f"workers not ready after {START_TIMEOUT:.0f} s"])
        if failed:
            await self.stop()
            raise ModelUnavailable(failed[0])
        self._started = True

    def wind_down(self) -> None:
        """The pool is closing: a process that exits from now on is not restarted."""
        self._stopping = True

    async def stop(self) -> None:
        """Close every process's input (each answers what it has read, then exits), wait, reap."""
        self._stopping = True
        self._stop_event.set()
        for p in self._procs:
            if p.writer is not None and not p.writer.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    p.writer.write_eof()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=DRAIN_TIMEOUT)
        for p in self._procs:
            await self._reap(p, grace=0)
        for task in self._tasks:
            task.cancel()

    # --- one slot ---

    async def _supervise(self, p: _Process) -> None:
        backoff = 0.5
        while not self._stopping:
            began = time.monotonic()
            try:
                await self._spawn(p)
                await self._serve(p)
            except asyncio.CancelledError:
                raise
            except Exception:  # a supervisor must survive anything, to restart the worker
                log.exception("worker %d failed", p.index)
            finally:
                was_alive, p.alive = p.alive, False
                self._m_alive.set(self.alive_count)
                self._on_exit(p.index, was_alive)  # before the reap: nothing more is sent to it meanwhile
                await self._reap(p, grace=DRAIN_TIMEOUT if self._stopping else 1.0)
            if self._stopping or (p.fatal and not self._started):
                return
            self.restarts += 1
            self._m_restarts.inc()
            log.warning("worker %d exited; restarting", p.index, extra={"was_alive": was_alive})
            if time.monotonic() - began < 5:
                # back off a worker that keeps dying, but wake at once if the pool is closing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5

    async def _spawn(self, p: _Process) -> None:
        parent, child = socket.socketpair()
        try:
            env = {**os.environ, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2"),
                   "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
            p.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hgr.common.inference.worker", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=env)
        finally:
            child.close()
        p.reader, p.writer = await asyncio.open_connection(sock=parent, limit=1 << 20)
        p.writer.write(self._init)

    async def _serve(self, p: _Process) -> None:
        assert p.reader is not None
        reader, decode = p.reader, m.from_worker.decode
        while True:
            try:
                header = await reader.readexactly(m.HEADER_LEN)
                msg = decode(await reader.readexactly(m.length(header)))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if isinstance(msg, (m.Result, m.Error)):
                self._on_answer(p.index, msg)
            elif isinstance(msg, m.VariantReady):
                self._on_variant(p.index, msg)
            elif isinstance(msg, m.Ready):
                p.alive = True
                p.fatal = None
                self._m_alive.set(self.alive_count)
                p.ready.set()
                self._on_ready(p.index, msg)
            else:
                p.fatal = msg.message
                log.error("worker %d: %s", p.index, msg.message)
                p.ready.set()  # start() stops waiting and reports it

    @staticmethod
    async def _reap(p: _Process, grace: float) -> None:
        if p.writer is not None:
            p.writer.close()
            p.writer = None
        proc, p.proc = p.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
