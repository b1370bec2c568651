"""Image bytes, fuzzed: mutated real photos (truncations, bit flips, splices) and headers declaring extreme
sizes. In-process, ``decode_image`` returns an image within the limits or raises an ``ImageError``, nothing
else; through the real worker, every image gets a result or an error and no worker ever restarts."""

from __future__ import annotations

from unittest import mock

from hypothesis import event, given
from hypothesis import strategies as st

from hgr.common.errors import HgrError, ImageError
from hgr.common.inference import images
from hgr.common.inference.images import ImageLimits, decode_image
from hgr.common.options import DetectOptions
from tests.fuzz.conftest import Services, fuzz
from tests.fuzz.fuzz_inputs import image_bytes

LIMITS = ImageLimits(max_bytes=192 * 1024, max_pixels=40_000_000, max_side=16_384, infer_max_side=4096)


@given(data=st.data())
@fuzz(2.0)
def test_decode_in_process(fuzz_photos: list[bytes], data: st.DataObject) -> None:
    image_data = data.draw(image_bytes(fuzz_photos))
    try:
        image = decode_image(image_data, LIMITS)
    except ImageError as exc:
        assert exc.status in (400, 413, 415) and exc.message
        event(exc.code)
        return
    event("decoded")
    height, width = image.rgb.shape[:2]
    assert image.rgb.ndim == 3 and image.rgb.shape[2] == 3
    assert max(width, height) <= LIMITS.infer_max_side and width >= 1 and height >= 1
    assert max(image.size) <= LIMITS.max_side and image.size[0] * image.size[1] <= LIMITS.max_pixels


def _header(data: bytes) -> object:
    try:
        return images.read_header(data, LIMITS)
    except ImageError as exc:
        return exc.code


@given(data=st.data())
@fuzz(2.0)
def test_the_plain_jpeg_header_path_answers_as_pillow_does(fuzz_photos: list[bytes], data: st.DataObject) -> None:
    """A JPEG without EXIF has its header read by libjpeg-turbo instead of Pillow: the same header or the same
    error, whatever the bytes."""
    image_data = data.draw(image_bytes(fuzz_photos))
    fast = _header(image_data)
    with mock.patch.object(images, "_plain_jpeg_size", return_value=None):
        assert fast == _header(image_data)
    event("fast path" if images._plain_jpeg_size(image_data) is not None else "Pillow")


@given(data=st.data(), stream=st.booleans())
@fuzz(0.75)
def test_through_the_worker(bounded: Services, fuzz_photos: list[bytes], data: st.DataObject, stream: bool) -> None:
    image_data = data.draw(image_bytes(fuzz_photos))
    try:
        result = bounded.run(lambda: bounded.pool.submit(image_data, DetectOptions(),
                                                         stream="fuzz" if stream else None))
    except HgrError as exc:
        assert exc.code != "worker_restarted" and exc.status < 500, exc.to_dict()
        event(exc.code)
        return
    event("result")
    assert {"hands", "total_fingers", "image_size", "timing"} <= set(result)
