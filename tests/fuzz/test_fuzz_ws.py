"""WebSocket messages, fuzzed, in both encodings, against a real edge (uvicorn) on the real worker.
Properties: every message gets an answer (``result`` or ``error``) or the connection is closed with a
close frame carrying an expected code (never dropped without one, never 1011); no worker restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hgr.common.errors import CATALOGUE
from hgr.edge import protocol
from hgr.loadtest.ws_stream import open_stream
from tests.fuzz.conftest import Services, fuzz
from tests.fuzz.fuzz_inputs import b64, dumps_loose, image_bytes, json_values, odd_json_texts, pack

EXPECTED_CLOSES = {protocol.CLOSE_UNSUPPORTED, protocol.CLOSE_TOO_BIG}


class Client:
    """One connection per encoding, reopened after the server closes it."""

    def __init__(self, services: Services, encoding: str) -> None:
        self.services, self.encoding = services, encoding
        self.ws: ClientConnection | None = None

    async def exchange(self, message: bytes | str) -> dict[str, Any] | int:
        """The server's answer to ``message``, or the close code it closed the connection with."""
        if self.ws is None:
            self.ws, hello = await open_stream(self.services.ws_url, subprotocols=[self.encoding])
            assert hello["type"] == "hello"
        try:
            await self.ws.send(message)
            return protocol.decode_server_message(await asyncio.wait_for(self.ws.recv(), 60))
        except ConnectionClosed as closed:
            self.ws = None
            assert closed.rcvd is not None, "the edge dropped the connection without a close frame"
            return closed.rcvd.code


def check(answer: dict[str, Any] | int, sent_text: bool, encoding: str) -> None:
    if isinstance(answer, int):
        event(f"closed {answer}")
        assert answer in EXPECTED_CLOSES, answer
        assert answer != protocol.CLOSE_UNSUPPORTED or (sent_text and encoding == protocol.MSGPACK)
        return
    assert answer["type"] in ("result", "error"), answer
    event(answer["type"] if answer["type"] == "result" else answer["code"])
    if answer["type"] == "error":
        assert answer["code"] in CATALOGUE and CATALOGUE[answer["code"]].ws_message, answer
        assert CATALOGUE[answer["code"]].status < 500 or answer["code"] == "not_ready", answer


@st.composite
def frame_maps(draw: st.DrawFn, photos: list[bytes], binary: bool) -> dict[str, Any]:
    image = draw(image_bytes(photos))
    doc: dict[str, Any] = {
        "type": draw(st.one_of(st.just("frame"), json_values)),
        "seq": draw(st.one_of(st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**64 - 1), json_values)),
        "ts": draw(st.one_of(st.none(), st.floats(), st.integers(-(2**63), 2**63 - 1), json_values)),
        "image": image if binary else b64(image),
    }
    if draw(st.booleans()):
        doc["opts"] = draw(st.one_of(json_values, st.fixed_dictionaries(
            {}, optional={"num_hands": st.integers(-2, 6), "mirrored": json_values, "model": json_values})))
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=2, unique=True)):
        if draw(st.booleans()):
            doc.pop(key)
        else:
            doc[key] = draw(st.one_of(json_values, st.binary(max_size=64)) if key == "image" and binary
                            else json_values)
    return doc


@pytest.fixture(scope="module")
def clients(services: Services) -> Iterator[dict[str, Client]]:
    """One client per encoding, kept across examples (reconnecting when the edge closed it)."""
    made = {encoding: Client(services, encoding) for encoding in protocol.ENCODINGS}
    yield made
    for client in made.values():
        if client.ws is not None:
            services.run(client.ws.close)


@given(data=st.data())
@fuzz(1.0)
def test_msgpack_connection(bounded: Services, clients: dict[str, Client], fuzz_photos: list[bytes],
                            data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["map", "map", "image", "bytes", "text", "big"]))
    message: bytes | str
    if kind == "map":
        message = pack(data.draw(frame_maps(fuzz_photos, binary=True)))
    elif kind == "image":
        message = data.draw(image_bytes(fuzz_photos))
    elif kind == "bytes":
        message = data.draw(st.one_of(st.binary(max_size=256), st.builds(pack, json_values)))
    elif kind == "text":
        message = data.draw(st.text(max_size=50))
    else:
        message = b"\x81" + b"\0" * (bounded.settings.max_frame_bytes + data.draw(st.integers(1, 1000)))
    client = clients[protocol.MSGPACK]
    check(bounded.run(lambda: client.exchange(message)), isinstance(message, str), protocol.MSGPACK)


@given(data=st.data())
@fuzz(1.0)
def test_json_connection(bounded: Services, clients: dict[str, Client], fuzz_photos: list[bytes],
                         data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["map", "map", "odd", "image"]))
    message: bytes | str
    if kind == "map":
        message = dumps_loose(data.draw(frame_maps(fuzz_photos, binary=False)))
    elif kind == "odd":
        message = data.draw(odd_json_texts())
    else:
        message = data.draw(image_bytes(fuzz_photos))
    if isinstance(message, str):  # a WebSocket text message is UTF-8: what a client can send at all
        message = message.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    client = clients[protocol.JSON]
    check(bounded.run(lambda: client.exchange(message)), isinstance(message, str), protocol.JSON)


def test_answers_on_a_json_connection_are_strict_json(bounded: Services, clients: dict[str, Client],
                                                       fuzz_photos: list[bytes]) -> None:
    """The ts echo: a bare NaN once made the answer invalid JSON."""
    client = clients[protocol.JSON]
    for ts in ("NaN", "Infinity", "-Infinity", "1e999", "12.5"):
        text = f'{{"type": "frame", "seq": 1, "ts": {ts}, "image": "{b64(fuzz_photos[0])}"}}'
        answer = bounded.run(lambda text=text: client.exchange(text))  # type: ignore[misc]
        assert isinstance(answer, dict)
        json.dumps(answer, allow_nan=False)
        assert answer["type"] == ("result" if ts == "12.5" else "error")
