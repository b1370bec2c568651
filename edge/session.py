"""One WebSocket stream: limits, parsing, the latest-frame-wins slot, inference, answers.

Two tasks per connection. The *reader* takes messages off the socket, checks size and rate, parses
them (``edge.protocol``) and puts the frame in the connection's single waiting slot: a newer frame
replaces an older waiting one (dropped, reason ``superseded``). The *processor* takes a turn in the pool
(``submit_latest``); when the turn comes the pool pulls whatever frame is in the slot *then*, so the
newest frame runs, however long the turn took. The processor sends the result, and only then takes the
next turn. So a connection has at most one frame in inference and one waiting, whatever the client
sends, and a flooding client only ever competes for its own slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from starlette.websockets import WebSocket

from hgr.common import metrics
from hgr.common.config import Settings
from hgr.common.contracts import DetectionPool, HelloMessage, ResultMessage, ServerMessage
from hgr.common.errors import HgrError, spec
from hgr.common.jsonsafe import JsonLimits
from hgr.common.options import BadOptions, DetectOptions
from hgr.edge import protocol
from hgr.edge.slot import FpsGate, LatestSlot
from hgr.edge.stats import EdgeStats

log = logging.getLogger("hgr.edge.session")

SHUTDOWN_GRACE = 5.0  # seconds an in-flight frame gets to finish when the edge stops


@dataclass(slots=True)
class _Waiting:
    seq: int
    ts: float | None
    image: bytes
    opts: DetectOptions
    received_at: float

    @property
    def rgb_shape(self) -> None:  # a client's frame is always a compressed image, never pixels
        return None


class StreamHost(Protocol):
    """What a session needs from the node that owns it (``edge.app.EdgeNode``), stated here so the
    dependency points one way: the node imports the session, never the reverse."""

    @property
    def settings(self) -> Settings: ...
    @property
    def defaults(self) -> DetectOptions: ...
    @property
    def counts(self) -> EdgeStats: ...
    @property
    def pool(self) -> DetectionPool: ...

    def throttle_for(self, key_name: str | None) -> FpsGate | None: ...

    def report_frame(self, stream_id: str, key_name: str | None, message: ResultMessage) -> None: ...

    def name_refusal(self, name: str, session: Session | None = None, *,
                     key_name: str | None = None) -> tuple[str, str] | None: ...

    def name_stream(self, session: Session, name: str) -> None: ...

    def camera_available(self, name: str, online: bool) -> None: ...


class Session:
    def __init__(self, node: StreamHost, websocket: WebSocket, negotiated: protocol.Negotiated,
                 key_name: str | None, stream_id: str) -> None:
        self.node = node
        self.ws = websocket
        self.encoding = negotiated.encoding
        self.key_name = key_name
        self.stream_id = stream_id
        self.camera: str | None = None  # the stream's name, when the client gave one (EdgeNode.name_stream)
        self._accepted = False  # a frame has been taken: too late to name the stream
        self.opts = node.defaults  # sticky: a frame's opts apply to it and to later frames
        self.slot: LatestSlot[_Waiting] = LatestSlot()
        self.gate = FpsGate(node.settings.max_fps)
        self.throttle: FpsGate | None = None  # a hub's cap on this stream (EdgeNode.set_stream_throttle)
        self.dropped = 0  # since the last result
        self.next_seq = 0
        self.closed = False
        self.draining = False  # the edge is stopping: no new frames
        self.close_code: int | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_message = time.monotonic()
        self._text = self.encoding == protocol.JSON
        self._json_limits = JsonLimits(node.settings.max_json_depth, node.settings.max_json_values)

    # --- sending ---

    async def send(self, message: ServerMessage) -> bool:
        if self.closed:
            return False
        data = protocol.encode(message, self.encoding)
        try:
            if self._text:
                await self.ws.send_text(data)  # type: ignore[arg-type]
            else:
                await self.ws.send_bytes(data)  # type: ignore[arg-type]
            return True
        except Exception:  # noqa: BLE001 - the peer went away mid-send; the reader sees the disconnect
            self.closed = True
            return False

    async def send_error(self, code: str, message: str, seq: int | None) -> None:
        self.node.counts.error(code)
        await self.send(protocol.error(code, message, seq))

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        try:
            await self.ws.close(code, reason[:120])
        except Exception as exc:  # noqa: BLE001 - already gone
            log.debug("close on a gone connection: %s", exc)

    # --- the connection's life ---

    async def run(self, hello: HelloMessage) -> None:
        await self.send(hello)
        processor = asyncio.create_task(self._process(), name=f"hgr-stream-{self.stream_id}")
        watchdog = asyncio.create_task(self._watch_idle())
        try:
            await self._read()
        finally:
            self.closed = True
            watchdog.cancel()
            processor.cancel()
            await asyncio.gather(processor, watchdog, return_exceptions=True)

    async def _read(self) -> None:
        settings, counts = self.node.settings, self.node.counts
        max_bytes = settings.max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                if self.close_code is None:
                    self.close_code = message.get("code", 1005)
                return
            now = self._last_message = time.monotonic()
            data, text = message.get("bytes"), message.get("text")
            if self.closed or self.draining:
                continue  # closing: read until the peer's close arrives, but process nothing
            size = len(data) if data is not None else len(text or "")
            if size > max_bytes:  # uvicorn enforces this too (ws_max_size); here for other servers
                await self.close(protocol.CLOSE_TOO_BIG, f"message of {size} bytes; the limit is {max_bytes}")
                continue
            try:
                if data is not None:
                    frame = protocol.decode_binary(data)
                    counts.received("image" if frame.seq is None else "msgpack")
                elif self._text:
                    frame = protocol.decode_text(text or "", self._json_limits)
                    counts.received("json")
                else:
                    await self.close(protocol.CLOSE_UNSUPPORTED, "text message on a msgpack connection; "
                                     f"open with subprotocol {protocol.JSON} to send JSON")
                    continue
            except protocol.ProtocolError as exc:
                counts.received("msgpack" if data is not None else "json")
                if not self.gate.allow(now):  # a flood of garbage gets no more answers than MAX_FPS
                    self._drop("rate_limited")
                    continue
                await self.send_error(exc.code, exc.message, exc.seq)
                continue
            seq = self.next_seq if frame.seq is None else frame.seq
            self.next_seq = max(self.next_seq, seq + 1)
            if frame.opts is not None:
                opts = frame.opts
                if isinstance(opts, dict) and "camera" in opts:
                    if not await self._take_name(opts["camera"]):
                        continue
                    opts = {k: v for k, v in opts.items() if k != "camera"}
                try:
                    self.opts = DetectOptions.parse(opts, self.node.defaults)
                except BadOptions as exc:
                    await self.send_error(exc.code, exc.message, seq)
                    continue
            self._accept(frame, seq, now)

    async def _take_name(self, name: object) -> bool:
        """``opts.camera``: name the stream on its first frame (repeating the name later is fine). A bad,
        taken or late name closes the connection with the catalogue's close code; False then."""
        if name == self.camera:
            return True
        if not isinstance(name, str) or self.camera is not None or self._accepted:
            refusal: tuple[str, str] | None = (
                "a stream is named once: in the URL (?camera=) or in the opts of its first frame", "bad_stream_name")
        else:
            refusal = self.node.name_refusal(name, self)
        if refusal is not None:
            reason, code = refusal
            self.node.counts.error(code)
            await self.close(spec(code).ws_close or protocol.CLOSE_NORMAL, reason)
            return False
        assert isinstance(name, str)
        self.node.name_stream(self, name)
        return True

    def _accept(self, frame: protocol.Frame, seq: int, now: float) -> None:
        """Rate checks, then the slot (replacing, and counting, a frame still waiting there)."""
        self._accepted = True
        # The stream's own cap before its key's, so a frame it drops does not spend the key's shared budget.
        for gate, reason in ((self.gate, "rate_limited"), (self.throttle, "throttled"),
                             (self.node.throttle_for(self.key_name), "throttled")):
            if gate is not None and not gate.allow(now):
                self._drop(reason)
                return
        if self.slot.put(_Waiting(seq, frame.ts, frame.image, self.opts, now)) is not None:
            self._drop("superseded")
        self._wakeup.set()

    def _drop(self, reason: str) -> None:
        """Counted for the client (``dropped`` in its next result) and for the edge's metrics."""
        self.dropped += 1
        self.node.counts.drop(reason)

    async def _process(self) -> None:
        node, pool, counts = self.node, self.node.pool, self.node.counts
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self.slot or self.draining:
                continue
            self._idle.clear()
            try:
                try:
                    # The frame is taken from the slot only when the turn comes: until then a newer one replaces it.
                    ran = await pool.submit_latest(self.slot.take, stream=self.stream_id)
                except HgrError:
                    continue  # no frame was taken (the pool is stopping): nothing to answer
                if ran is None:
                    continue
                waiting, result = ran.frame, ran.outcome
                if isinstance(result, HgrError):
                    await self.send_error(result.code, result.message, waiting.seq)
                    continue
                message = protocol.result(waiting.seq, waiting.ts, result, self.dropped)
                if self.camera is not None:
                    message["camera"] = self.camera
                    metrics.CAMERA_FRAMES_PROCESSED.labels(self.camera).inc()
                self.dropped = 0
                if not await self.send(message):
                    continue
                counts.processed(self.key_name, time.monotonic() - waiting.received_at, result)
                node.report_frame(self.stream_id, self.key_name, message)
            finally:
                self._idle.set()

    async def _watch_idle(self) -> None:
        timeout = self.node.settings.idle_timeout
        while not self.closed:
            remaining = self._last_message + timeout - time.monotonic()
            if remaining <= 0:
                await self.close(protocol.CLOSE_NORMAL, "idle timeout")
                return
            await asyncio.sleep(remaining)

    async def shutdown(self) -> None:
        """Edge stopping: let the frame in inference finish and be answered, then close 1001."""
        self.draining = True
        self.slot.take()
        try:
            await asyncio.wait_for(self._idle.wait(), SHUTDOWN_GRACE)
        except TimeoutError:
            pass
        await self.close(protocol.CLOSE_GOING_AWAY, "edge shutting down")
