"""JSON shape limits, fuzzed: ``jsonsafe.within`` (the whole-document check at C speed, used for MQTT
payloads, WebSocket messages and form fields) passes exactly the documents ``Shape`` (the streamed
reference, used for REST bodies) passes, whatever the bytes and the limits."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from hgr.common.jsonsafe import JsonLimits, JsonTooComplex, Shape, within
from tests.fuzz.conftest import fuzz
from tests.fuzz.fuzz_inputs import odd_json_texts

# Bytes made mostly of what changes a shape: brackets, commas, quotes and escapes, with some filler.
shape_soup = st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\", b'\\"', b"\\\\", b"a", b" ",
                                       b"\n", b"\xff"]), max_size=300).map(b"".join)
limits = st.builds(JsonLimits, max_depth=st.integers(2, 40), max_values=st.integers(16, 400),
                   max_string=st.one_of(st.none(), st.integers(0, 60)))


def _shape_passes(data: bytes, lim: JsonLimits) -> bool:
    try:
        Shape(lim).feed(data)
    except JsonTooComplex:
        return False
    return True


@given(data=st.one_of(shape_soup, odd_json_texts().map(lambda t: t.encode("utf-8", "surrogatepass"))),
       lim=limits)
@fuzz(2.0)
def test_within_agrees_with_the_streamed_shape(data: bytes, lim: JsonLimits) -> None:
    passes = _shape_passes(data, lim)
    assert within(data, lim) == passes
    event("passes" if passes else "refused")
