from pathlib import Path

import pytest

from feedmux.errors import ConfigError
from feedmux.ops.config import ReplaySettings, RunPaths, Settings, redact

SECRET = "s3cr3t-token-value"


def settings(**kw: object) -> Settings:
    base: dict[str, object] = {"url": "wss://quote.alltick.co/quote-stock-b-ws-api",
                               "token": SECRET, "codes": ["600519.SH"]}  # fmt: skip
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def test_token_never_shows_in_repr() -> None:
    for obj in (settings(), ReplaySettings(token=SECRET, codes=["600519.SH"])):
        assert SECRET not in repr(obj) and SECRET not in str(obj)


def test_redact_removes_token_query_and_value() -> None:
    text = f"connect wss://h/p?token={SECRET}&x=1 failed ({SECRET})"
    assert SECRET not in redact(text, SECRET)
    assert redact("wss://h/p?token=abc&x=1") == "wss://h/p?token=***&x=1"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "http://x"}, "ws://"), ({"url": "wss://h/p?token=x"}, "not inside --url"),
        ({"token": ""}, "FEEDMUX_TOKEN"), ({"shards": 0}, "--shards"),
        ({"codes": []}, "empty"),
        ({"stores": ["mysql://u:pw@h/db"]}, "'mysql://h/db': the scheme 'mysql' is not supp"),
        ({"stores": ["/data/ticks"]}, "not a URL; use sqlite://DIR"),
        ({"stores": ["sqlite://", "sqlite://"]}, "twice"),
        ({"public_endpoint": "ipc:///tmp/x"}, "--public: endpoint must be tcp"),
        ({"public_endpoint": "tcp://h:65530"}, "port number"),
        ({"public_endpoint": "tcp://h:7000", "internal_endpoint": "tcp://h:7010"}, "overlap"),
        ({"curve_secret_file": "k"}, "needs --public"), ({"metrics_port": 70000}, "port"),
    ],
)  # fmt: skip
def test_invalid_settings_say_what_to_change(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**kw).validate()


def test_unknown_settings_field_is_rejected() -> None:
    with pytest.raises(TypeError):
        settings(shard=4)


def test_run_dir_is_private_and_length_checked(tmp_path: object) -> None:
    paths = RunPaths(Path(str(tmp_path)) / "run")
    paths.prepare()
    assert paths.root.stat().st_mode & 0o777 == 0o700
    with pytest.raises(ConfigError, match="too long"):
        RunPaths(Path("/tmp") / ("x" * 120)).prepare()


def test_store_urls_name_a_directory_or_a_server_and_default_to_the_data_dir() -> None:
    assert [(s.kind, s.location) for s in settings(data_dir="d").store_list()] == [("sqlite", "d")]
    stores = settings(stores=["sqlite:///abs/dir", "sqlite:////abs/two", "sqlite://rel/dir",
                              "postgresql://u:pw@h/db"]).store_list()  # fmt: skip
    assert [s.location for s in stores] == ["/abs/dir", "/abs/two", "rel/dir",
                                            "postgresql://u:pw@h/db"]  # fmt: skip
    assert [s.shown for s in stores] == ["sqlite:///abs/dir", "sqlite:///abs/two",
                                         "sqlite://rel/dir", "postgresql://u:***@h/db"]  # fmt: skip


def test_a_bad_store_url_never_echoes_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(stores=["mysql://u:pw@h/db"]).validate()
    assert "pw" not in str(caught.value)


def test_consumers_find_tcp_endpoints_and_the_curve_key_in_run_json(tmp_path: Path) -> None:
    import msgspec  # noqa: PLC0415
    import zmq  # noqa: PLC0415

    from feedmux.client.subscriber import Endpoints  # noqa: PLC0415
    from feedmux.ops.config import Manifest  # noqa: PLC0415

    server_public, _ = zmq.curve_keypair()
    key = server_public.decode()
    manifest = Manifest(shards=3, pid=1, data_dir="d", public="tcp://127.0.0.1:7700",
                        internal="tcp://127.0.0.1:7800", curve_server_key=key)  # fmt: skip
    (tmp_path / "run.json").write_bytes(msgspec.json.encode(manifest))
    conn = Endpoints.of(tmp_path, None, None, None, None)
    assert conn.shards == 3 and conn.curve is not None and conn.curve.server == server_public
    assert conn.paths.shard_pub(2) == "tcp://127.0.0.1:7704"
    assert conn.paths.shard_snapshot(2) == "tcp://127.0.0.1:7705"
    assert conn.paths.control == "tcp://127.0.0.1:7804"  # after shard inputs 7800-7802, acks
    with pytest.raises(ConfigError, match="give shards="):
        Endpoints.of(tmp_path, None, "tcp://h:7700", None, None)


def test_redact_removes_each_of_several_tokens() -> None:
    text = "conn 0 tok-one-1 and conn 1 tok-two-2 and token=tok-one-1"
    assert redact(text, "tok-one-1,tok-two-2") == "conn 0 *** and conn 1 *** and token=***"
    assert redact(text, " tok-one-1 , tok-two-2 ") == "conn 0 *** and conn 1 *** and token=***"


def test_redact_removes_a_token_standing_alone_never_part_of_a_word() -> None:
    url = "ws://127.0.0.1:4/quote-stock-b-ws-api?token=t"
    assert redact(url, "t") == "ws://127.0.0.1:4/quote-stock-b-ws-api?token=***"
    assert redact('"code":"301234.SZ","seq":438123417001', "1234") == (
        '"code":"301234.SZ","seq":438123417001')  # fmt: skip
    assert redact("ret=401 token s3cret-1 invalid", "s3cret-1") == "ret=401 token *** invalid"


@pytest.mark.parametrize(
    ("url", "why"),
    [("ws://127.0.0.1:99999/x", "port"), ("ws://127.0.0.1:abc/x", "port"), ("ws://", "host"),
     ("wss:///quote", "host")],
)  # fmt: skip
def test_a_url_without_a_usable_host_or_port_is_refused_at_start(url: str, why: str) -> None:
    settings = Settings(url=url, token="t", codes=["600519.SH"])
    with pytest.raises(ConfigError, match=f"--url.*{why}"):
        settings.validate()


def test_an_unknown_replay_fault_is_named_with_the_known_ones() -> None:
    bad = ReplaySettings(token=SECRET, codes=["600519.SH"], faults=["huge-header", "hug-header"])
    with pytest.raises(ConfigError, match=r"unknown --fault hug-header; known: huge-header"):
        bad.validate()
