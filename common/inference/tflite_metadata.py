"""Copy the TFLite metadata block of one model into another (how the lite bundle's detector is made).

The ``mediapipe==0.10.21`` wheel ships ``palm_detection_lite.tflite`` without the ``TFLITE_METADATA``
entry the Tasks API reads its input normalisation from; ``palm_detection_full.tflite`` has it, and both
take the same 1x192x192x3 float input in [0, 1] and give the same outputs. This does what MediaPipe's
own ``MetadataPopulator`` does (append a buffer holding the block, name it in ``Model.metadata``, repack
the flatbuffer), with the TFLite schema that ``ai-edge-litert`` ships, so the result is byte-identical
to the lite detector in the project's shared bundle (``hgr.common.inference.model`` checks its SHA-256).
"""

from __future__ import annotations

import flatbuffers  # type: ignore[import-untyped]
from ai_edge_litert import schema_py_generated as schema

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"TFL3"


def metadata_block(model: bytes) -> bytes | None:
    """The model's TFLITE_METADATA bytes, or None when it has none."""
    root = schema.Model.GetRootAsModel(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name().decode("utf-8") == METADATA_NAME:
            buffer = root.Buffers(entry.Buffer())
            if buffer.DataLength():
                return bytes(buffer.DataAsNumpy().tobytes())
    return None


def with_metadata_of(model: bytes, donor: bytes) -> bytes:
    """``model`` with ``donor``'s TFLITE_METADATA block (replacing any it had); ValueError if the donor has none."""
    block = metadata_block(donor)
    if block is None:
        raise ValueError("the donor model has no TFLite metadata")
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    buffer = schema.BufferT()
    buffer.data = block
    tree.buffers = tree.buffers or []
    tree.metadata = tree.metadata or []
    named = [m for m in tree.metadata if m.name.decode("utf-8") == METADATA_NAME]
    if named:
        tree.buffers[named[0].buffer] = buffer
    else:
        tree.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(tree.buffers) - 1
        tree.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), FILE_IDENTIFIER)
    return bytes(builder.Output())
