"""One inference worker process: decode + detect, one frame at a time, on one core.

Started by ``common.inference.pool`` as ``python -m hgr.common.inference.worker <fd>``
(a fresh interpreter, never a fork of the event-loop process), talking over a socketpair inherited as
``fd``. Messages are msgpack arrays, each prefixed by its 4-byte big-endian length:

    parent → worker  ["init", settings_dict, model_paths]            once, first
                     ["batch", [[job_id, image_bytes, num_hands, mirrored, model, stream], ...]]
                     ["close_stream", stream]
    worker → parent  ["ready", pid] | ["fatal", message]              once, after loading the model
                     ["result", job_id, started_monotonic, result]
                     ["error", job_id, started_monotonic, code, message]  (the status is the catalogue's)

Compressed image bytes cross the process boundary, never pixels. ``started_monotonic`` is
``time.monotonic()``, a system-wide clock on Linux, so the parent can compute queueing time. The worker
exits when the parent closes its end (also when the parent dies), after answering what it has read.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Any, BinaryIO

import msgpack

log = logging.getLogger("hgr.worker")

HEADER_LEN = 4  # bytes of big-endian length before each msgpack message


def frame_message(msg: Any) -> bytes:
    payload: bytes = msgpack.packb(msg, use_bin_type=True)
    return len(payload).to_bytes(HEADER_LEN, "big") + payload


def read_message(rfile: BinaryIO) -> Any | None:
    """The next message, or None at end of stream."""
    header = rfile.read(HEADER_LEN)
    if len(header) < HEADER_LEN:
        return None
    payload = rfile.read(int.from_bytes(header, "big"))
    return msgpack.unpackb(payload, raw=False)


def _serve(sock: socket.socket) -> int:
    # Imported here so the parent can import frame_message without loading mediapipe twice over.
    from hgr.common.config import Settings
    from hgr.common.errors import HgrError
    from hgr.common.inference.engine import Detector
    from hgr.common.inference.stream_pipeline import StreamPipelines
    from hgr.common.options import DetectOptions

    rfile = sock.makefile("rb")

    def send(msg: Any) -> None:
        sock.sendall(frame_message(msg))

    init = read_message(rfile)
    if not init or init[0] != "init":
        return 2
    try:
        settings = Settings(**init[1])
        detector = Detector(settings, init[2])
        detector.warm_up()
        # Stream frames: the shared hand pipeline (STREAM_PIPELINE=litert), or the detector's VIDEO landmarkers.
        streams: StreamPipelines | None = detector.streams  # litert: its hand pipelines serve the stills too
        if streams is not None:
            streams.warm_up(settings.model_variant if settings.model_variant in init[2] else next(iter(init[2])))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which refuses to start
        send(["fatal", f"worker could not load the model: {exc}"])
        return 1
    send(["ready", os.getpid()])
    try:
        while (msg := read_message(rfile)) is not None:
            if msg[0] == "batch":
                for job_id, data, num_hands, mirrored, model, stream in msg[1]:
                    started = time.monotonic()
                    try:
                        opts = DetectOptions(num_hands, mirrored, model)
                        if stream is not None and streams is not None:
                            result = streams.detect_bytes(data, opts, stream)
                        else:
                            result = detector.detect_bytes(data, opts, stream)
                        send(["result", job_id, started, result])
                    except HgrError as exc:
                        send(["error", job_id, started, exc.code, exc.message])
                    except Exception:  # one bad frame must not take the worker down
                        log.exception("inference failed")
                        send(["error", job_id, started, "internal_error", "inference failed"])
            elif msg[0] == "close_stream":
                detector.close_stream(msg[1])
                if streams is not None:
                    streams.close_stream(msg[1])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away; nothing left to answer
    finally:
        detector.close()
        if streams is not None:
            streams.close()
    return 0


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group; the parent decides when workers stop (by closing the socket).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with socket.socket(fileno=int(argv[0])) as sock:
        return _serve(sock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
