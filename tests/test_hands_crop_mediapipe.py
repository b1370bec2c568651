"""The pipeline's crop against MediaPipe's own ImageToTensor, bit for bit.

MediaPipe's preprocessing is not exposed, so it is observed through a model that returns its input: an
identity TFLite model (a RESHAPE), given the palm detector's metadata (input range [0, 1], two outputs) and
run by MediaPipe Tasks' ImageEmbedder, which crops the whole image to the model's 192×192 input the way
every Tasks graph does (ImageToTensorCalculator, OpenCV path).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import flatbuffers  # type: ignore[import-untyped]
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from hgr.common.inference.hands import crop
from hgr.common.inference.hands.bundle import read_models
from hgr.common.inference.hands.roi import Roi
from hgr.common.inference.tflite_metadata import with_metadata_of

SIZE = 192


def identity_model(size: int) -> bytes:
    """A TFLite model with one float input 1×size×size×3 and two outputs that are that input, flattened."""
    n = size * size * 3
    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    code.version = 1
    model.operatorCodes = [code]
    shape = schema.BufferT()
    shape.data = np.array([1, n], np.int32).tobytes()
    model.buffers = [schema.BufferT(), shape, schema.BufferT(), schema.BufferT(), schema.BufferT()]

    def tensor(name: bytes, dims: list[int], kind: int, buffer: int) -> schema.TensorT:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, dims, kind, buffer
        return t

    graph = schema.SubGraphT()
    graph.tensors = [tensor(b"image", [1, size, size, 3], schema.TensorType.FLOAT32, 2),
                     tensor(b"shape", [2], schema.TensorType.INT32, 1),
                     tensor(b"out0", [1, n], schema.TensorType.FLOAT32, 3),
                     tensor(b"out1", [1, n], schema.TensorType.FLOAT32, 4)]
    graph.inputs, graph.outputs = [0], [2, 3]
    ops = []
    for out in (2, 3):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [out]
        op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        op.builtinOptions = schema.ReshapeOptionsT()
        op.builtinOptions.newShape = [1, n]
        ops.append(op)
    graph.operators = ops
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def mediapipe_crop(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from mediapipe.tasks.python import BaseOptions, vision

    palm, _ = read_models(model_path)
    path = tmp_path_factory.mktemp("identity") / "identity.tflite"
    path.write_bytes(with_metadata_of(identity_model(SIZE), palm))
    options = vision.ImageEmbedderOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                          l2_normalize=False, quantize=False)
    with vision.ImageEmbedder.create_from_options(options) as embedder:
        yield embedder


def test_crop_is_mediapipes_bit_for_bit(mediapipe_crop: Any, hand_photos: list[tuple[Path, int]]) -> None:
    import mediapipe as mp

    cropper = crop.Cropper(SIZE)
    for path, _ in hand_photos[:12]:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        theirs = mediapipe_crop.embed(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).embeddings[0].embedding
        # The embedder stretches the whole image onto its input (no letterbox): the ROI is the image itself.
        ours = cropper(rgb, Roi(0.5, 0.5, 1.0, 1.0, 0.0), zero_border=True)
        assert np.array_equal(np.round(ours.reshape(-1) * 255), np.round(np.asarray(theirs) * 255)), path.name
