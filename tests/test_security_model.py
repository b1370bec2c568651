"""docs/security.md against the code (as test_errors.py holds the error catalogue to docs/api.md): every
route the hub and the edge serve, every fleet topic and every control command is in its tables, and the
scope each route row names is the one ``hub.access.ROUTE_SCOPES`` gives it (test_access.py proves the
routes enforce those)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from hgr.common import contracts
from hgr.common.auth import DETECT, SCOPES
from hgr.common.inference.pool import InferencePool
from hgr.common.messaging import topics
from hgr.common.messaging.bus import LocalBus
from hgr.edge.app import EdgeNode
from hgr.hub.access import PUBLIC, ROUTE_SCOPES
from hgr.hub.app import Hub
from tests.hub_support import hub_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"


def doc_rows(section: str) -> list[list[str]]:
    """The body rows of the first table under ``## <section>``."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    table = text[text.index("\n|") + 1:].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()[2:]]


def documented_routes() -> dict[tuple[str, str, str], str]:
    """(service, method, path) -> scope, from the Routes table."""
    return {(service, method, path.strip("`")): scope for service, method, path, scope, _ in doc_rows("Routes")}


def served(routes: typing.Sequence[object]) -> set[tuple[str, str]]:
    out = set()
    for r in routes:
        if isinstance(r, WebSocketRoute):
            out.add(("WS", r.path))
        elif isinstance(r, Mount):
            out.add(("GET", r.path or "/"))
        elif isinstance(r, Route):
            out |= {(m, r.path) for m in r.methods or () if m != "HEAD"}
    return out

@pytest.fixture(scope="module")
def idle_pool(model_path: str) -> InferencePool:
    return InferencePool(hub_settings(), {"full": model_path}, service="hub", workers=1)  # never started


def test_every_route_of_hub_and_edge_is_in_the_document(idle_pool: InferencePool) -> None:
    settings = hub_settings()
    hub = Hub(settings, idle_pool, bus=LocalBus(settings, service="hub"))
    edge = EdgeNode(hub_settings(edge_id="doc-edge"), idle_pool)
    doc = documented_routes()
    code = {("hub", m, p) for m, p in served(hub.routes)} | {("edge", m, p) for m, p in served(edge.routes)}
    assert code == set(doc), f"served, not documented: {code - set(doc)}; documented, not served: {set(doc) - code}"
    hub_doc = {(m, p): scope for (service, m, p), scope in doc.items() if service == "hub"}
    assert hub_doc == ROUTE_SCOPES, "docs/security.md and hub/access.py disagree on a scope"
    # The edge checks one scope, on /ws (edge/app.py; test_access.py proves it); its other routes are open.
    edge_doc = {(m, p): scope for (service, m, p), scope in doc.items() if service == "edge"}
    assert edge_doc == {(m, p): DETECT if (m, p) == ("WS", "/ws") else PUBLIC for m, p in served(edge.routes)}
    assert {s for s in doc.values()} <= {PUBLIC, *SCOPES}


def test_every_topic_and_command_is_in_the_document() -> None:
    topic_rows = {row[0].strip("`") for row in doc_rows("MQTT topics")}
    assert topic_rows == ({f"edges/{{edge_id}}/{k}" for k in topics.KINDS} | {"edges/{edge_id}/cameras/{name}/{leaf}"}
                          | {"homeassistant/{component}/{edge_id}/{object}/config"})  # HA_DISCOVERY
    commands = {typing.get_args(typing.get_type_hints(t)["cmd"])[0] for t in typing.get_args(contracts.ControlCommand)}
    assert {row[0].strip("`") for row in doc_rows("Control commands")} == commands == {"throttle", "rebirth"}
    assert "## Listeners and leaks" in DOC.read_text()


def test_the_document_names_no_placeholder() -> None:
    assert not re.search(r"\bTODO\b|\bTBD\b", DOC.read_text())
