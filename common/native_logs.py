"""With LOG_FORMAT=json every line a server writes is a JSON object, native libraries' lines included.

LiteRT, XNNPACK and MediaPipe's glog/absl logging write plain text straight to file descriptor 2, from C++,
past Python's logging; so do the inference workers (their stderr is the parent's). ``capture()`` points
descriptor 2 at a pipe and gives Python's own logging a duplicate of the original; a reader thread turns
each line from the pipe into a log record (level and source parsed from the glog, TFLite and Python
prefixes), so a log collector gets one format. Lines that are already JSON (a worker's own records) pass
through untouched. The start-up chatter that carries nothing (accelerator registered, delegate created,
unaligned buffers copied) is logged at DEBUG; everything else keeps its level, so a real error is never
dropped. Workers inherit descriptor 2, so what a worker wrote before dying is still read and logged here.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
from typing import TextIO

log = logging.getLogger("hgr.native")

# glog / absl:  W0000 00:00:1796413713.647714    6697 inference_runner_litert.cc:1433] message
_GLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w./-]+:\d+)\] ?(.*)$")
# TFLite / LiteRT:  INFO: [cpu_registry.cc:75] message   |   WARNING: message
_TFLITE = re.compile(r"^(VERBOSE|INFO|WARNING|ERROR|FATAL): (?:\[([\w./-]+:\d+)\] )?(.*)$")
# Python's logging.basicConfig default:  WARNING:hgr.worker:message
_PYTHON = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):([\w.]+):(.*)$")
_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL,
           "VERBOSE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "FATAL": logging.CRITICAL, "CRITICAL": logging.CRITICAL}
# Said once per model load by every worker; nothing an operator acts on.
_CHATTER_TEXTS = (
    r"Creating LiteRT environment", r"RegisterAccelerator", r"XNNPACK CPU accelerator registered",
    r"Flatbuffer model initialized", r"Created TensorFlow Lite XNNPACK delegate", r"Logging before InitGoogle",
    r"has an unaligned buffer", r"Input tensor memory is not aligned", r"NORM_RECT without IMAGE_DIMENSIONS",
    r"Initialized TensorFlow Lite runtime", r"Replacing \d+ out of \d+ node\(s\) with delegate",
)
CHATTER = re.compile("|".join(_CHATTER_TEXTS))


def parse(line: str) -> tuple[int, str, str | None]:
    """A native line → (level, message, source file:line or the Python logger name)."""
    for pattern in (_GLOG, _TFLITE, _PYTHON):
        match = pattern.match(line)
        if match:
            level, source, message = match.group(1), match.group(2), match.group(3)
            if pattern is _PYTHON:
                source, message = match.group(2), match.group(3)
            return _LEVELS[level], message, source
    return logging.WARNING, line, None  # unknown text (a traceback line, a library's print): kept, visible


def _emit(line: str, out: TextIO) -> None:
    if line.startswith("{"):
        try:
            if isinstance(json.loads(line), dict):  # already a JSON record (a worker's logging)
                print(line, file=out, flush=True)
                return
        except ValueError:
            pass
    level, message, source = parse(line)
    if CHATTER.search(message):
        level = logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, message, extra={"native": True, "source": source} if source else {"native": True})


def capture() -> None:
    """Route descriptor 2 through the JSON logger for the rest of the process (and its children)."""
    out_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    out = os.fdopen(out_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stderr.flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    # Python's own records (and tracebacks) go to the original stderr, not into the pipe.
    sys.stderr = out
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(out)

    def read() -> None:
        with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as pipe:
            for raw in pipe:
                line = raw.rstrip("\n")
                if line.strip():
                    try:
                        _emit(line, out)
                    except Exception:  # noqa: BLE001 - a line must never end the reader
                        print(json.dumps({"level": "error", "logger": "hgr.native", "msg": line}), file=out)

    reader = threading.Thread(target=read, name="native-stderr", daemon=True)
    reader.start()

    def drain() -> None:
        # Closing our descriptor 2 ends the pipe once the workers are gone; what is in it is still logged.
        os.dup2(out_fd, 2)
        reader.join(timeout=2)

    atexit.register(drain)
