#!/usr/bin/env python3
"""The broker's users and rights as a Mosquitto dynamic-security file, built from a `mosquitto_passwd` file.

    python3 deploy/mosquitto/dynsec.py deploy/secrets/mosquitto.passwd > deploy/secrets/dynamic-security.json

Why not the plain ACL file: Mosquitto 2.0's `acl_file` checks what a client may *read* only when a message
is delivered, never what it may *subscribe* to. An edge's credentials could join the hubs' shared
subscription (`$share/hgr-hub/…`); the broker then gave the rogue member its share of every edge's
messages and dropped them on the read check, so the hubs lost them. The dynamic-security plugin checks
subscriptions when they are made, `$share/<group>/` included, literally.

Its 2.0 ACLs do not substitute `%u`, so every edge gets a role of its own, naming its own topics. Users:
`hub` reads the fleet (metrics and events only through the shared subscription of each `--group`, status
plainly) and writes every edge's `control`; `observer` reads the fleet's topics and writes nothing; any
other user is an edge whose id is its user name: it writes its own `status`, `metrics`, `events` and
`results` and its cameras' state topics `cameras/<name>/fingers|gesture|hands|available` (published, and
set as the Will of each camera's availability connection, by connections logged in as that edge), and
reads its own `control`; with Home Assistant discovery it writes and reads back its own configs,
`homeassistant/+/<edge id>/+/config` (`--ha-prefix`), which the observer (Home Assistant's login) reads.
Nothing else. Everything not granted is denied. No user may use the
plugin's control API (`$CONTROL/…`): the file is the whole truth, rebuilt when users change.

The password hashes are copied, not recomputed: `mosquitto_passwd`'s `$7$` entries are PBKDF2-SHA512
with the salt and iteration count the plugin stores (docs/security.md, "MQTT topics"). Standard library
only, so it runs on a host without hgr installed (deploy/init-secrets.sh).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

KINDS_WRITTEN_BY_EDGE = ("status", "metrics", "events", "results")
# hgr.common.messaging.topics.CAMERA_LEAVES (tests/test_broker_acl.py holds them equal; this file runs without hgr)
CAMERA_LEAVES = ("fingers", "gesture", "hands", "available")


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def roles(users: list[str], prefix: str, groups: list[str], ha_prefix: str = "homeassistant") -> list[dict[str, Any]]:
    edges = f"{prefix}/edges"
    hub = [_acl("subscribeLiteral", f"{edges}/+/status"),
           *(_acl("subscribeLiteral", f"$share/{group}/{edges}/+/{kind}")
             for group in groups for kind in ("metrics", "events")),
           *(_acl("publishClientReceive", f"{edges}/+/{kind}") for kind in ("status", "metrics", "events")),
           _acl("publishClientSend", f"{edges}/+/control")]
    observer = [_acl("subscribePattern", f"{prefix}/#"), _acl("publishClientReceive", f"{prefix}/#")]
    if ha_prefix:  # Home Assistant, logged in as the observer, reads the discovery configs too
        observer += [_acl("subscribePattern", f"{ha_prefix}/#"), _acl("publishClientReceive", f"{ha_prefix}/#")]
    out = [{"rolename": "hub", "acls": hub}, {"rolename": "observer", "acls": observer}]
    for user in users:
        if user in ("hub", "observer"):
            continue
        mine = f"{edges}/{user}"
        out.append({"rolename": f"edge:{user}", "acls": [
            *(_acl("publishClientSend", f"{mine}/{kind}") for kind in KINDS_WRITTEN_BY_EDGE),
            *(_acl("publishClientSend", f"{mine}/cameras/+/{leaf}") for leaf in CAMERA_LEAVES),
            _acl("subscribeLiteral", f"{mine}/control"), _acl("publishClientReceive", f"{mine}/control"),
            # HA_DISCOVERY: the configs under its own node id (its edge id), written and read back (a camera
            # taken out of CAMERAS has its configs cleared); hgr.edge.ha_discovery.discovery_filter
            *([_acl("publishClientSend", f"{ha_prefix}/+/{user}/+/config"),
               _acl("subscribeLiteral", f"{ha_prefix}/+/{user}/+/config"),
               _acl("publishClientReceive", f"{ha_prefix}/+/{user}/+/config")] if ha_prefix else [])]})
    return out


def _client(line: str, n: int) -> dict[str, Any]:
    user, _, hashed = line.partition(":")
    parts = hashed.split("$")  # "", "7", iterations, salt, hash
    if not user or len(parts) != 5 or parts[1] != "7":
        raise SystemExit(f"passwd line {n}: expected user:$7$iterations$salt$hash (mosquitto_passwd 2.x)")
    if any(c in user for c in "+#/") or user.startswith("$"):
        raise SystemExit(f"passwd line {n}: {user!r} cannot be an edge id (a topic level)")
    role = user if user in ("hub", "observer") else f"edge:{user}"
    return {"username": user, "password": parts[4], "salt": parts[3], "iterations": int(parts[2]),
            "roles": [{"rolename": role}]}


def build(passwd_text: str, prefix: str = "hgr/v1", groups: tuple[str, ...] = ("hgr-hub",),
          ha_prefix: str = "homeassistant") -> dict[str, Any]:
    lines = [(n, line.strip()) for n, line in enumerate(passwd_text.splitlines(), 1)]
    clients = [_client(line, n) for n, line in lines if line and not line.startswith("#")]
    users = [c["username"] for c in clients]
    if len(set(users)) != len(users):
        raise SystemExit("passwd: a user appears twice")
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": True},
            "clients": clients, "groups": [], "roles": roles(users, prefix, list(groups), ha_prefix)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("passwd", help="a mosquitto_passwd file: hub, observer and one user per edge id")
    parser.add_argument("--prefix", default="hgr/v1", help="MQTT_TOPIC_PREFIX (default hgr/v1)")
    parser.add_argument("--group", action="append", help="MQTT_SHARE_GROUP of the hubs (default hgr-hub; repeat "
                        "for several groups)")
    parser.add_argument("--ha-prefix", default="homeassistant", help="HA_DISCOVERY_PREFIX: each edge may write and "
                        "read its own discovery configs under it, the observer reads it ('' grants nothing)")
    args = parser.parse_args(argv)
    with open(args.passwd, encoding="utf-8") as f:
        json.dump(build(f.read(), args.prefix, tuple(args.group or ["hgr-hub"]), args.ha_prefix), sys.stdout,
                  indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
