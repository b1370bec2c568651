"""The pool ↔ worker messages (common/inference/messages.py): their wire shape and round trips."""

from __future__ import annotations

import msgpack
import msgspec
import pytest

from hgr.common.inference import messages as m


def _payload(framed: bytearray) -> bytes:
    wire = bytes(framed)
    assert m.length(wire[:m.HEADER_LEN]) == len(wire) - m.HEADER_LEN
    return wire[m.HEADER_LEN:]


def test_a_batch_is_one_msgpack_array_of_positional_tasks() -> None:
    batch = m.Batch([m.Task(7, memoryview(b"\xff\xd8jpeg"), 2, False, "full", "cam-1"),
                     m.Task(8, memoryview(b"png"), 1, True, "lite", None)])
    wire = msgpack.unpackb(_payload(m.frame(batch)), raw=False)
    # rgb_shape, appended last with a default, is None: a compressed image
    assert wire == ["batch", [[7, b"\xff\xd8jpeg", 2, False, "full", "cam-1", None],
                              [8, b"png", 1, True, "lite", None, None]]]
    assert m.to_worker.decode(_payload(m.frame(batch))) == batch
    # a task without it (as made before it was added) still decodes, as a compressed image
    assert m.to_worker.decode(msgpack.packb(["batch", [[7, b"jpeg", 2, False, "full", "cam-1"]]])) == \
        m.Batch([m.Task(7, memoryview(b"jpeg"), 2, False, "full", "cam-1")])


def test_a_cameras_pixels_travel_with_their_height_and_width() -> None:
    task = m.Task(9, memoryview(bytes(2 * 3 * 3)), 1, False, "full", "cam-1", (2, 3))
    wire = msgpack.unpackb(_payload(m.frame(m.Batch([task]))), raw=False)
    assert wire == ["batch", [[9, bytes(18), 1, False, "full", "cam-1", [2, 3]]]]
    payload = _payload(m.frame(m.Batch([task])))
    decoded = m.to_worker.decode(payload)
    assert decoded == m.Batch([task])
    assert isinstance(decoded, m.Batch) and decoded.tasks[0].image.obj is payload  # read in place, not copied out
    with pytest.raises(msgspec.ValidationError):  # a shape is two integers
        m.to_worker.decode(msgpack.packb(["batch", [[9, b"", 1, False, "full", "cam-1", [2, 3, 3]]]]))


@pytest.mark.parametrize("msg", [
    m.Init({"workers": 2, "model_variant": "full"}, {"full": "/m/full.task"}),
    m.CloseStream("cam-1"),
])
def test_parent_messages_round_trip(msg: m.ToWorker) -> None:
    assert m.to_worker.decode(_payload(m.frame(msg))) == msg


@pytest.mark.parametrize("msg", [
    m.Ready(1234),  # STREAM_PIPELINE=mediapipe: no hand pipeline to report
    m.Ready(1234, m.Inference("full", "openvino", "bf16", "openvino/bf16")),
    m.VariantReady(m.Inference("lite", "litert", "fp32", "openvino/bf16", "p_0001.jpg: [] (fp32: [5])")),
    m.Fatal("worker could not load the model: no file"),
    m.Result(3, 12.5, {"hands": [], "total_fingers": 0, "timing": {"infer_ms": 1.0}}),
    m.Error(4, 12.5, "corrupt_image", "the image is truncated"),
])
def test_worker_messages_round_trip(msg: m.FromWorker) -> None:
    assert m.from_worker.decode(_payload(m.frame(msg))) == msg


def test_a_malformed_message_is_refused_at_the_boundary() -> None:
    with pytest.raises(msgspec.ValidationError):
        m.from_worker.decode(msgpack.packb(["result", "not an id", 1.0, {}]))
    with pytest.raises(msgspec.ValidationError):
        m.to_worker.decode(msgpack.packb(["shutdown"]))
