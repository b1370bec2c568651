"""The error catalogue (common/errors.py): one status per code, every code the code base raises is in it,
and docs/api.md (all codes) and docs/protocol.md (the WebSocket ones) list exactly the catalogue."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import hgr
from hgr.common.errors import CATALOGUE, HgrError, ModelUnavailable, errors_table, spec, ws_mapping
from hgr.common.options import BadOptions, check_model
from hgr.edge import protocol
from hgr.hub import middleware

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("common", "edge", "hub", "hgr", "loadtest") for p in (ROOT / folder).glob("*.py")]


def _all_error_classes() -> list[type[HgrError]]:
    for info in pkgutil.walk_packages(hgr.__path__, "hgr."):
        if info.name.split(".")[1] in ("common", "edge", "hub"):
            importlib.import_module(info.name)
    found, todo = [], [HgrError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _docs_rows(text: str) -> dict[str, tuple[int, str]]:
    """code → (status, WebSocket column) from the generated table of docs/api.md."""
    block = text.split("<!-- errors-table: generated from hgr.common.errors.CATALOGUE -->", 1)[1]
    block = block.split("<!-- /errors-table -->", 1)[0]
    rows = {}
    for line in [line for line in block.splitlines() if line.startswith("|")][2:]:
        code, status, ws, _when = (cell.strip() for cell in line.strip("|").split("|", 3))
        rows[code.strip("`")] = (int(status), ws)
    return rows


def test_every_error_class_takes_its_status_from_the_catalogue() -> None:
    classes = _all_error_classes()
    assert len(classes) > 20  # the walk really found the package's classes
    for cls in classes:
        assert cls.code in CATALOGUE, cls
        assert "status" not in cls.__dict__ or cls is HgrError, cls
        assert cls("x").status == CATALOGUE[cls.code].status


def test_a_code_overridden_at_raise_time_gets_that_codes_status() -> None:
    exc = HgrError("nope", code="forbidden")
    assert (exc.code, exc.status) == ("forbidden", 403)
    assert exc.to_dict() == {"code": "forbidden", "message": "nope"}


def test_uncatalogued_codes_and_class_statuses_are_refused() -> None:
    with pytest.raises(KeyError, match="not in hgr.common.errors.CATALOGUE"):
        HgrError("x", code="no_such_code")
    with pytest.raises(KeyError):
        type("Stray", (HgrError,), {"code": "no_such_code"})
    with pytest.raises(TypeError, match="comes from CATALOGUE"):
        type("Restatus", (HgrError,), {"code": "bad_json", "status": 418})


def test_model_unavailable_has_one_status_and_startup_failure_its_own_code() -> None:
    with pytest.raises(BadOptions) as asked:
        check_model("lite", {"full"})
    assert (asked.value.code, asked.value.status) == ("model_unavailable", 422)
    assert (ModelUnavailable("gone").code, ModelUnavailable("gone").status) == ("model_load_failed", 503)


def test_every_code_literal_in_the_source_is_catalogued() -> None:
    pattern = re.compile(r"""(?:\bcode=|["']code["']:\s*|code\s*=\s*)["']([a-z_]+)["']""")
    code_lines = (line for path in SOURCES for line in path.read_text().splitlines()
                  if not line.lstrip().startswith("#"))
    used = {m for line in code_lines for m in pattern.findall(line)}
    assert {"bad_json", "forbidden", "overloaded", "unreadable", "internal_error"} <= used  # the scan works
    assert used - CATALOGUE.keys() == set()


def test_websocket_close_codes_are_the_protocols() -> None:
    assert spec("unauthorized").ws_close == spec("forbidden").ws_close == protocol.CLOSE_POLICY
    assert spec("overloaded").ws_close == protocol.CLOSE_OVERLOADED
    for code, entry in CATALOGUE.items():
        assert not (entry.ws_message and entry.ws_close is not None), code


def test_generic_status_codes_of_the_middleware_agree_with_the_catalogue() -> None:
    for status, code in middleware._STATUS_CODES.items():
        assert CATALOGUE[code].status == status


def test_docs_api_lists_exactly_the_catalogue() -> None:
    rows = _docs_rows((ROOT / "docs" / "api.md").read_text())
    expected = {code: (entry.status, ws_mapping(entry)) for code, entry in CATALOGUE.items()}
    assert rows.keys() - expected.keys() == set(), "docs/api.md lists codes the catalogue lacks"
    assert expected.keys() - rows.keys() == set(), "docs/api.md lacks codes: paste errors_table() there"
    assert rows == expected
    assert errors_table().count("\n") == len(CATALOGUE) + 2


def test_docs_protocol_lists_exactly_the_websocket_error_messages() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("### `error` (edge → client)", 1)[1].split("## Close codes", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {code for line in table for code in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == {code for code, entry in CATALOGUE.items() if entry.ws_message}
    closes = text.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    for code, entry in CATALOGUE.items():
        if entry.ws_close is not None:
            row = next(line for line in closes.splitlines() if line.startswith(f"| {entry.ws_close} "))
            assert f"`{code}`" in row, (code, row)
