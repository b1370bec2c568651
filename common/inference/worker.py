"""One inference worker process: decode (or unpack a camera's pixels) + detect, one frame at a time, on one core.

Started by ``common.inference.supervisor`` as ``python -m hgr.common.inference.worker <fd>``
(a fresh interpreter, never a fork of the event-loop process), talking over a socketpair inherited as
``fd``. The messages both ways are declared in ``common.inference.messages``. The worker exits when the
parent closes its end (also when the parent dies), after answering what it has read.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from hgr.common.inference import messages as m

if TYPE_CHECKING:
    from hgr.common.inference.hands.check import Checked

log = logging.getLogger("hgr.worker")


def read_message(rfile: BinaryIO) -> m.ToWorker | None:
    """The next message, or None at end of stream."""
    header = rfile.read(m.HEADER_LEN)
    if len(header) < m.HEADER_LEN:
        return None
    return m.to_worker.decode(rfile.read(m.length(header)))


def inference(variant: str, checked: Checked) -> m.Inference:
    """What the parent is told runs ``variant``'s hand models, from its start-up check."""
    choice = checked.pipeline.choice
    return m.Inference(variant, choice.runtime, choice.precision, checked.asked.name, checked.fallback)


def _serve(sock: socket.socket) -> int:
    # Imported here, after the socket is up, so that importing this module stays light.
    from hgr.common.config import Settings
    from hgr.common.errors import HgrError
    from hgr.common.inference.engine import Detector
    from hgr.common.inference.stream_pipeline import StreamPipelines
    from hgr.common.options import DetectOptions

    rfile = sock.makefile("rb")

    def send(msg: m.FromWorker) -> None:
        sock.sendall(m.frame(msg))

    init = read_message(rfile)
    if not isinstance(init, m.Init):
        return 2
    try:
        settings = Settings(**init.settings)
        detector = Detector(settings, init.model_paths)
        detector.warm_up()
        # Stream frames: the shared hand pipeline (STREAM_PIPELINE=litert), or the detector's VIDEO landmarkers.
        streams: StreamPipelines | None = detector.streams  # litert: its hand pipelines serve the stills too
        ready = m.Ready(os.getpid())
        if streams is not None:
            paths = init.model_paths
            variant = settings.model_variant if settings.model_variant in paths else next(iter(paths))
            streams.warm_up(variant)  # makes and checks the variant's pipeline (INFERENCE_PRECISION)
            ready = m.Ready(os.getpid(), inference(variant, streams.checked[variant]))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which refuses to start
        send(m.Fatal(f"worker could not load the model: {exc}"))
        return 1
    send(ready)
    told: set[str] = set() if streams is None else set(streams.checked)  # the variants the parent knows the check of
    try:
        while (msg := read_message(rfile)) is not None:
            if isinstance(msg, m.Batch):
                for task in msg.tasks:
                    started = time.monotonic()
                    answer: m.Result | m.Error
                    try:
                        opts = DetectOptions(task.num_hands, task.mirrored, task.model)
                        # rgb_shape: packed pixels from the edge's camera reader (checked by images.unpack_rgb)
                        if task.stream is not None and streams is not None:
                            result = streams.detect_bytes(task.image, opts, task.stream, rgb_shape=task.rgb_shape)
                        else:
                            result = detector.detect_bytes(task.image, opts, task.stream, rgb_shape=task.rgb_shape)
                        answer = m.Result(task.id, started, cast(dict[str, Any], result))
                    except HgrError as exc:
                        answer = m.Error(task.id, started, exc.code, exc.message)
                    except Exception:  # one bad frame must not take the worker down
                        log.exception("inference failed")
                        answer = m.Error(task.id, started, "internal_error", "inference failed")
                    if streams is not None and len(streams.checked) > len(told):
                        # a variant made on this frame: what runs it, before the frame's answer
                        for other in streams.checked.keys() - told:
                            told.add(other)
                            send(m.VariantReady(inference(other, streams.checked[other])))
                    send(answer)
            elif isinstance(msg, m.CloseStream):
                detector.close_stream(msg.stream)
                if streams is not None:
                    streams.close_stream(msg.stream)
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
