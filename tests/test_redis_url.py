"""REDIS_URL and friends: one server, Sentinel or Cluster, parsed; bad forms refused with a clear message."""

from __future__ import annotations

import pytest

from hgr.common.config import load_settings
from hgr.common.errors import ConfigError
from hgr.common.redis_url import RedisTarget, parse_redis_url
from hgr.hub.redis_conn import RedisConn


def test_single_server_urls_are_handed_over_as_they_are() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/2", "unix:///run/redis.sock"):
        assert parse_redis_url(url) == RedisTarget("single", url)


def test_sentinel_url() -> None:
    t = parse_redis_url("redis+sentinel://user:p%40ss@s1:26379,s2,[::1]:26380/mymaster/3")
    assert t.kind == "sentinel" and t.master == "mymaster" and t.db == 3
    assert t.nodes == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (t.username, t.password, t.tls) == ("user", "p@ss", False)
    assert parse_redis_url("rediss+sentinel://s1/m").tls and parse_redis_url("redis+sentinel://s1/m").db == 0


def test_cluster_url() -> None:
    t = parse_redis_url("redis+cluster://:secret@n1:7000,n2:7001")
    assert t.kind == "cluster" and t.nodes == (("n1", 7000), ("n2", 7001)) and t.password == "secret"
    assert parse_redis_url("redis+cluster://n1/0").nodes == (("n1", 6379),)


@pytest.mark.parametrize(("url", "says"), [
    ("http://h", "expected redis://"),
    ("redis+sentinel://s1:26379", "names its master"),
    ("redis+sentinel://s1/m/x", "expected a number"),
    ("redis+cluster://n1/2", "only database 0"),
    ("redis+cluster://n1:port", "must be a number"),
    ("redis+cluster://n1:70000", "1…65535"),
    ("redis+cluster://", "no host:port"),
])
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)
    for variable in ("REDIS_URL", "RATE_LIMIT_REDIS_URL"):
        with pytest.raises(ConfigError, match=f"^{variable}: .*{says}"):
            load_settings({variable: url}, env_file=None)


@pytest.mark.parametrize("url", ["redis://:pw@l1:6379/0", "rediss://:pw@l1:6380/1", "unix:///run/redis.sock",
                                 "redis+sentinel://:pw@s1,s2:26380/limits/0", "redis+cluster://:pw@n1:7000,n2:7001"])
def test_the_limits_own_redis_takes_every_form_and_stays_a_secret(url: str) -> None:
    settings = load_settings({"RATE_LIMIT_REDIS_URL": url}, env_file=None)
    assert settings.rate_limit_redis_url == url
    assert settings.resolved_redis_url() is None  # the cache and the fleet do not move with it
    assert settings.public()["RATE_LIMIT_REDIS_URL"] == "***"
    conn = RedisConn(url, name="rate_limit")  # the one connection code, whichever Redis it is
    assert conn.target == parse_redis_url(url) and "pw" not in str(conn.status())


def test_settings_build_the_topology_url() -> None:
    def url(**env: str) -> str | None:
        return load_settings(env, env_file=None).resolved_redis_url()

    assert url() is None
    assert url(REDIS_URL="redis://:pw@n1:7000/0", REDIS_CLUSTER="true") == "redis+cluster://:pw@n1:7000/0"
    assert url(REDIS_ENABLED="true", REDIS_HOST="n1", REDIS_PORT="7000", REDIS_CLUSTER="true") \
        == "redis+cluster://n1:7000"
    assert url(REDIS_SENTINELS="s1:26379,s2:26379", REDIS_SENTINEL_MASTER="prod", REDIS_DB="1") \
        == "redis+sentinel://s1:26379,s2:26379/prod/1"
    assert parse_redis_url(url(REDIS_SENTINELS="s1,s2") or "").nodes == (("s1", 26379), ("s2", 26379))
    with pytest.raises(ConfigError, match="REDIS_CLUSTER"):
        load_settings({"REDIS_SENTINELS": "s1", "REDIS_CLUSTER": "true"}, env_file=None)
    with pytest.raises(ConfigError, match="REDIS_SENTINELS: "):
        load_settings({"REDIS_SENTINELS": "s1:x"}, env_file=None)


def test_status_names_the_topology_and_hides_the_password() -> None:
    conn = RedisConn("redis+sentinel://:hunter2@127.0.0.1:1/mymaster/0")
    status = conn.status()
    assert status["topology"] == "sentinel" and "hunter2" not in str(status) and status["up"] is False
