"""A faster paho-mqtt ``Client`` for the hub's ingest: same packets on the wire, fewer system calls.

Split from ``common.messaging.bus`` because it leans on paho internals; ``buffered_client_class`` falls back to
paho's own ``Client`` whenever those internals are not there.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from hgr.common import internals

READ_CHUNK = 64 * 1024  # bytes per socket read: many MQTT packets per system call
READ_BURST = 500  # packets handled per wakeup before paho gets to write and keep alive
PROPS_CACHE_MAX = 256  # distinct PUBLISH property blocks kept parsed (in practice: one per content type)


def buffered_client_class(mqtt: Any) -> type:
    """paho's ``Client`` with its socket reads buffered and a burst's PUBACKs sent together.

    Stock paho reads a packet with three or four ``recv`` calls (type byte, length bytes one at a time,
    body), handles one packet per ``select`` and queues each PUBACK on its own (a wake-up byte through
    a socket pair, then its own ``send``): at 10k messages/s those system calls, not the hub's code,
    were what its network thread spent its time on. Here one ``recv`` takes up to ``READ_CHUNK`` bytes
    that paho's parser is then served from, a wakeup handles up to ``READ_BURST`` packets, and their
    PUBACKs leave in one ``send``, in order, once the burst is handled (as paho: after ``on_message``).
    paho also built and parsed a new ``Properties`` object per received PUBLISH (its slowest part):
    here each distinct property block is parsed once and shared, read-only, by its messages.
    The packets on the wire are the same. It relies on paho internals: when they are not there
    (another paho version) it is the stock client, and ``common.internals`` says so.
    """
    base: type = mqtt.Client
    if internals.check_all()["paho_buffered_reads"]:  # logged at start-up (internals.warn_fallbacks)
        return base
    ok, again, no_conn = mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN, mqtt.MQTT_ERR_NO_CONN
    puback = int(mqtt.PUBACK)
    pack_puback = struct.Struct("!BBH").pack
    clock = getattr(mqtt, "time_func", time.monotonic)  # what paho stamps messages with
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    class BufferedClient(base):  # type: ignore[misc]
        _rbuf: bytes = b""
        _rpos = 0
        _rsock: Any = None
        _finishing = False
        _acks: list[int] | None = None  # mids to acknowledge at the end of the current burst

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._props_seen: dict[bytes, Any] = {}

        def _sock_recv(self, bufsize: int) -> bytes:
            if self._rsock is not self._sock:  # a new connection: nothing of the old one carries over
                self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
            if self._rpos >= len(self._rbuf):
                if self._finishing:  # the burst is over: take only what the current packet needs
                    rest: bytes = super()._sock_recv(bufsize)
                    return rest
                data: bytes = super()._sock_recv(READ_CHUNK)
                if len(data) <= bufsize:
                    return data
                self._rbuf, self._rpos = data, 0
            start = self._rpos
            self._rpos = min(start + bufsize, len(self._rbuf))
            return self._rbuf[start:self._rpos]

        def _handle_publish(self) -> Any:
            # paho builds and parses a fresh Properties object per message (its slowest part); the
            # property block of a fleet message is the same bytes every time (its content type), so
            # each distinct block is parsed once by paho and shared, read-only. QoS 2, MQTT 3.1.1,
            # paho's logging and anything unusual take paho's own path.
            header = self._in_packet["command"]
            qos = (header & 0x06) >> 1
            if qos == 2 or self._protocol != mqtt.MQTTv5 or self.on_log is not None \
                    or getattr(self, "_logger", None) is not None:
                return super()._handle_publish()
            try:
                packet = memoryview(self._in_packet["packet"])
                end = 2 + int.from_bytes(packet[0:2], "big")
                topic = bytes(packet[2:end])
                mid = 0
                if qos:
                    mid = int.from_bytes(packet[end:end + 2], "big")
                    end += 2
                props_len, shift, pos = 0, 0, end
                while True:  # the property block's length: a variable byte integer
                    byte = packet[pos]
                    props_len |= (byte & 0x7F) << shift
                    pos += 1
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ValueError("property length too long")
                start = pos + props_len
                if start > len(packet) or mid == 0 and qos:
                    raise ValueError("truncated packet")
                raw = bytes(packet[end:start])
                props = self._props_seen.get(raw)
                if props is None:
                    props = Properties(PacketTypes.PUBLISH)
                    props.unpack(raw)
                    if len(self._props_seen) < PROPS_CACHE_MAX:
                        self._props_seen[raw] = props
                payload = bytes(packet[start:])
            except Exception:  # noqa: BLE001 - malformed (paho's parsers raise many types): paho reports it
                return super()._handle_publish()
            message = mqtt.MQTTMessage(mid=mid, topic=topic)
            message.dup = bool(header & 0x08)
            message.qos = qos
            message.retain = bool(header & 0x01)
            message.properties = props
            message.payload = payload
            message.timestamp = clock()
            self._handle_on_message(message)
            if qos == 1 and not getattr(self, "_manual_ack", False):
                return self._send_puback(mid)
            return ok

        def _send_puback(self, mid: int) -> Any:
            if self._acks is None:  # not inside loop_read (paho's own thread only calls it there)
                return super()._send_puback(mid)
            self._acks.append(mid)
            return ok

        def loop_read(self, max_packets: int = 1) -> Any:
            if self._sock is None:
                return no_conn
            handled = 0
            acks = self._acks = []
            # Stop only with the buffer empty: select() cannot see bytes already taken off the socket.
            # After the burst the buffered packets are handled without reading more into the buffer.
            try:
                while handled < READ_BURST or self._rpos < len(self._rbuf):
                    self._finishing = handled >= READ_BURST
                    rc = self._packet_read()
                    if rc > 0:  # connection lost: unacknowledged messages come again (a kept session)
                        return self._loop_rc_handle(rc)
                    if rc == again or self._sock is None:
                        break
                    handled += 1
            finally:
                self._finishing = False
                self._acks = None
            if acks and self._sock is not None:
                self._packet_queue(puback, b"".join([pack_puback(puback, 2, mid) for mid in acks]), 0, 1)
                self._packet_write()
            return ok

    return BufferedClient
