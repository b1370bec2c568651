"""hgr.serve's guards hook into uvicorn's protocol classes (there is nothing to configure for them): the
internals they hook are named in common/internals.py (uvicorn_header_timeout, uvicorn_ws_guards), where
tests/test_internals.py fails naming one a release lost. Here: the servers use both guards, and the guards
override nothing their base lacks. The limits themselves are tested against a real edge in
tests/test_scenario_edge_abuse.py."""

from __future__ import annotations

import pytest

from hgr.common.config import load_settings
from hgr.serve import guarded_websocket_protocol, header_timeout_protocol, uvicorn_options


def test_the_servers_use_both_guards() -> None:
    options = uvicorn_options(load_settings({}, env_file=None))
    assert isinstance(options["ws"], type) and options["ws"].__name__ == "GuardedWebSocketProtocol"
    assert isinstance(options["http"], type) and options["http"].__name__ == "HeaderTimeoutProtocol"


@pytest.mark.parametrize("which", ["websocket", "http"])
def test_the_guarded_classes_override_only_existing_methods(which: str) -> None:
    cls = guarded_websocket_protocol(10, 256) if which == "websocket" else header_timeout_protocol(10, 65536, 100)
    base = cls.__mro__[1]
    for name, value in vars(cls).items():
        if callable(value) and not name.startswith("_") and name not in ("data_received",):
            assert hasattr(base, name), f"{cls.__name__}.{name} overrides nothing in {base.__name__}"
