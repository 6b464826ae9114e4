"""Run options from a TOML file, FEEDMUX_* variables and flags, in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feedmux.errors import ConfigError, StoreError
from feedmux.ingest.journal import JournalWriter
from feedmux.ops import options
from feedmux.ops.cli import (
    REPLAY,
    VENDOR_URL,
    _run_dir,
    build_parser,
    build_settings,
    main,
    replay_settings,
    resolve_run_options,
)
from feedmux.ops.config import ReplaySettings, Settings
from feedmux.ops.options import Option, Resolved, Section
from feedmux.simulator.market import a_share_universe

SECRET = "file-token-9f3a"


def resolved(argv: list[str], env: dict[str, str] | None = None) -> Resolved:
    args = build_parser().parse_args(["run", *argv])
    return resolve_run_options(args, env or {})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feedmux.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, 'shards = 2\nwatchdog = 12\nstore = ["sqlite://"]\n'
                   'max-codes-per-conn = 100\nreplay = true\n')  # fmt: skip
    r = resolved(["--config", str(config), "--shards", "6"],
                 {"FEEDMUX_SHARDS": "4", "FEEDMUX_WATCHDOG": "9.5"})  # fmt: skip
    assert r.values["shards"] == 6 and r.sources["shards"] == "flag"
    assert r.values["watchdog"] == 9.5 and r.sources["watchdog"] == "env"
    assert r.values["max_codes_per_conn"] == 100 and r.sources["max_codes_per_conn"] == "file"
    assert r.values["store"] == ["sqlite://"] and r.values["replay"] is True
    assert r.values["pub_queue"] == 50_000 and r.sources["pub_queue"] == "default"
    settings, replay = build_settings(r)
    assert settings.shards == 6 and settings.watchdog_s == 9.5 and replay is not None
    assert settings.max_codes_per_conn == 100


def test_the_request_spacing_reaches_the_receivers_settings() -> None:
    settings, _ = build_settings(resolved(["--replay"]))
    assert settings.cross_interval_ms == 3300  # AllTick's 3 s and a margin, by default
    settings, _ = build_settings(resolved(["--replay", "--cross-interval-ms", "500"]))
    assert settings.cross_interval_ms == 500
    with pytest.raises(ConfigError, match="--cross-interval-ms must be >= 1"):
        build_settings(resolved(["--replay", "--cross-interval-ms", "0"]))


def test_config_file_is_found_through_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, "shards = 3\n")
    assert resolved([], {"FEEDMUX_CONFIG": str(config)}).values["shards"] == 3


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path, "shards = 2\nshrads = 4\n")
    with pytest.raises(ConfigError, match="unknown key 'shrads'"):
        resolved(["--config", str(config)])


@pytest.mark.parametrize(
    ("text", "message"),
    [('shards = "many"', "key 'shards'"), ("free_plan = 3", "true or false"),
     ('overflow = "lose"', "must be one of spill, drop"), ("store = 5", "expected a list"),
     ("shards = [1", "feedmux.toml")],
)  # fmt: skip
def test_bad_values_in_the_file_say_which_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolved(["--config", str(write(tmp_path, text + "\n"))])


def test_environment_values_are_checked_like_flags() -> None:
    with pytest.raises(ConfigError, match="FEEDMUX_SHARDS"):
        resolved([], {"FEEDMUX_SHARDS": "eight"})
    assert resolved([], {"FEEDMUX_NO_JOURNAL": "yes"}).values["no_journal"] is True
    assert resolved([], {"FEEDMUX_STORE": "sqlite:// sqlite:///x"}).values["store"] == [
        "sqlite://", "sqlite:///x"]  # fmt: skip


def test_unknown_environment_variable_is_a_warning_naming_it() -> None:
    r = resolved([], {"FEEDMUX_SHRADS": "4", "FEEDMUX_REQUIRE_SERVICES": "1",
                      "FEEDMUX_SLOW_TESTS": "1"})  # the tests' switches are no options  # fmt: skip
    assert [w for w in r.warnings if "FEEDMUX_SHRADS" in w] and len(r.warnings) == 1
    assert r.values["shards"] == 8


def test_codes_on_the_command_line_replace_the_files_symbols_file(tmp_path: Path) -> None:
    config = write(tmp_path, 'symbols_file = "watch.txt"\n')
    r = resolved(["--config", str(config), "--codes", "600519"])
    assert r.values["codes"] == "600519" and r.values["symbols_file"] is None


def test_config_show_masks_the_token_and_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, f'token = "{SECRET}"\nshards = 2\n'
                   f'store = ["postgresql://u:{SECRET}@db/x"]\n')  # fmt: skip
    assert main(["config", "show", "--config", str(config), "--depth", "5"], env={}) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and 'token = "***"' in out
    assert 'store = ["postgresql://u:***@db/x"]' in out  # a password in a URL is masked too
    assert "shards = 2" in out and "# file" in out and "depth = 5" in out and "# flag" in out
    again = tmp_path / "shown.toml"
    again.write_text(out.replace('token = "***"', 'token = "t"'))
    assert resolved(["--config", str(again)]).values["depth"] == 5  # it is a valid config file


def test_config_show_masks_a_url_password_without_a_user_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``redis://:password@host`` is how Redis is usually given a password."""
    args = ["config", "show", "--redis", f"redis://:{SECRET}@127.0.0.1:6379/0",
            "--store", f"postgresql://:{SECRET}@db/x"]  # fmt: skip
    assert main(args, env={}) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "redis://:***@127.0.0.1:6379/0" in out
    assert "postgresql://:***@db/x" in out


def test_a_readable_config_file_holding_the_token_gets_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, f'token = "{SECRET}"\n')
    config.chmod(0o644)
    resolved(["--config", str(config)])
    err = capsys.readouterr().err
    assert "chmod 600" in err and SECRET not in err


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        resolved(["--config", str(tmp_path / "nope.toml")])


def test_keygen_writes_a_private_secret_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", str(tmp_path), "--name", "alice"], env={}) == 0
    assert (tmp_path / "alice.key_secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "alice.key").stat().st_mode & 0o777 == 0o644
    before = (tmp_path / "alice.key_secret").read_bytes()
    assert main(["keygen", str(tmp_path), "--name", "alice"], env={}) == 2
    assert "not overwritten" in capsys.readouterr().err
    assert (tmp_path / "alice.key_secret").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "env", "text", "message"),
    [([], {}, "shards = 0", "feedmux.toml: key 'shards' must be between 1 and 256, got 0"),
     ([], {"FEEDMUX_SHARDS": "300"}, "",
      "environment variable FEEDMUX_SHARDS must be between 1 and 256, got 300"),
     (["--shards", "0"], {"FEEDMUX_SHARDS": "300"}, "", "--shards must be between 1 and 256"),
     ([], {"FEEDMUX_DEPTH": "11"}, "", "FEEDMUX_DEPTH must be between 0 and 10, got 11"),
     ([], {}, "max-frame-bytes = 100", "key 'max-frame-bytes' must be >= 1024, got 100"),
     (["--metrics-port", "70000"], {}, "", "--metrics-port must be between 0 and 65535"),
     ([], {}, 'redis = "http://u:pw@h"', "key 'redis' must be a redis://, rediss:// or "
      "unix:// URL, got 'http://u:\\*\\*\\*@h'")],
)  # fmt: skip
def test_a_value_out_of_bounds_is_named_as_it_was_given(
    tmp_path: Path, argv: list[str], env: dict[str, str], text: str, message: str
) -> None:
    config = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message):
        build_settings(resolved(["--replay", "--config", str(config), *argv], env))


def test_no_option_given_means_the_settings_defaults() -> None:
    settings, _ = build_settings(resolved(["--codes", "600519", "--token", "t"]))
    expected = Settings(url=VENDOR_URL, token="t", codes=["600519.SH"])
    assert msgspec.structs.asdict(settings) == msgspec.structs.asdict(expected)


def test_old_option_names_still_work_and_say_the_new_one(tmp_path: Path) -> None:
    table = [Section("", "", (Option("new-name", "h", aliases=("old-name",)),))]
    r = options.resolve(table, {}, {"FEEDMUX_OLD_NAME": "env"}, {"old_name": "file"}, "f.toml")
    assert r.values["new_name"] == "env" and r.sources["new_name"] == "env"
    assert r.warnings == ["warning: f.toml: key 'old_name' is deprecated; use 'new-name'",
                          "warning: environment variable FEEDMUX_OLD_NAME is deprecated; use "
                          "FEEDMUX_NEW_NAME"]  # fmt: skip
    r = options.resolve(table, {"old_name": "flag"}, {})
    assert r.values["new_name"] == "flag" and r.names["new_name"] == "--new-name"
    assert r.warnings == ["warning: --old-name is deprecated; use --new-name"]


def replay(argv: list[str]) -> tuple[ReplaySettings, list[str]]:
    args = build_parser().parse_args(["replay", "--codes", "600519", *argv])
    r = options.resolve(REPLAY, vars(args), {})
    return replay_settings(r, {"FEEDMUX_TOKEN": "t"}), r.warnings


def test_replay_log_flags_say_what_they_hold_and_the_old_names_still_work() -> None:
    settings, warnings = replay(["--sent-messages", "m.log", "--write-times", "w.bin"])
    assert (settings.sent_messages, settings.write_times, warnings) == ("m.log", "w.bin", [])
    settings, warnings = replay(["--sent-log", "m.log", "--send-log", "w.bin"])
    assert (settings.sent_messages, settings.write_times) == ("m.log", "w.bin")
    assert warnings == ["warning: --sent-log is deprecated; use --sent-messages",
                        "warning: --send-log is deprecated; use --write-times"]  # fmt: skip


def test_replay_rate_is_ticks_and_journal_rate_is_frames(tmp_path: Path) -> None:
    JournalWriter(tmp_path, "t").event(1, 0, "connect", url="ws://x")  # a journal, of no vendor
    j = str(tmp_path)
    settings, warnings = replay(["--journal", j, "--journal-rate", "800"])
    assert (settings.journal_rate, settings.rate, warnings) == (800, 5000, [])
    settings, warnings = replay(["--journal", j, "--rate", "800"])  # what --rate used to do
    assert settings.journal_rate == 800 and "use --journal-rate" in warnings[0]
    settings, _ = replay(["--rate", "800"])
    assert (settings.rate, settings.journal_rate) == (800, None)
    with pytest.raises(StoreError, match="no journal files"):  # a typo: said at once
        replay(["--journal", str(tmp_path / "nope")])


def test_commands_that_find_a_run_take_its_directories_through_the_same_layers(
    tmp_path: Path,
) -> None:
    def run_dir(argv: list[str], env: dict[str, str]) -> Path:
        return _run_dir(build_parser().parse_args(["status", *argv]), env)

    config = write(tmp_path, 'data-dir = "from-file"\n')
    assert run_dir(["--config", str(config)], {}) == Path("from-file/run")
    assert run_dir([], {"FEEDMUX_CONFIG": str(config), "FEEDMUX_DATA_DIR": "env"}) == Path(
        "env/run")  # fmt: skip
    assert run_dir(["--config", str(config), "--run-dir", "r"], {"FEEDMUX_RUN_DIR": "e"}) == Path(
        "r")  # fmt: skip
    assert run_dir([], {}) == Path("feedmux-data/run")
    typo = write(tmp_path, 'data-dir = "d"\nrun-dri = "r"\n')  # a typo is said, not ignored
    with pytest.raises(ConfigError, match="unknown key 'run-dri'"):
        run_dir(["--config", str(typo)], {})


def with_token(*argv: str) -> Settings:
    return build_settings(resolved(["--token", "t", *argv]))[0]


def test_the_provider_brings_its_own_defaults_from_a_flag_a_file_or_the_environment(
    tmp_path: Path,
) -> None:
    settings = with_token("--provider", "polygon", "--codes", "AAPL,BRK-B")
    assert settings.provider == "polygon" and settings.codes == ["AAPL.US", "BRK.B.US"]
    assert settings.url == "wss://socket.massive.com/stocks" and settings.max_conns == 1
    assert settings.session_options.subscribe_model == "add_remove"
    config = write(tmp_path, 'provider = "itick"\nmax-conns = 2\n')
    settings = with_token("--config", str(config), "--codes", "00700")
    assert (settings.provider, settings.url, settings.max_codes_per_conn) == (
        "itick",
        "wss://api.itick.org/stock",
        500,
    )
    assert settings.max_conns == 2  # what was given beats the vendor's default
    # and the vendor's pacing, flags or not
    assert (settings.heartbeat_interval_ms, settings.reconnect_spacing_ms) == (30_000, 3_000)
    settings = with_token("--provider", "polygon", "--codes", "AAPL")
    assert (settings.heartbeat_interval_ms, settings.reconnect_spacing_ms) == (0, 1_000)
    r = resolved(["--codes", "600519"], {"FEEDMUX_PROVIDER": "alltick", "FEEDMUX_TOKEN": "t"})
    assert build_settings(r)[0].url == VENDOR_URL


def test_an_unknown_provider_is_named_where_it_was_given(tmp_path: Path) -> None:
    config = write(tmp_path, 'provider = "bloomberg"\n')
    with pytest.raises(ConfigError, match="key 'provider': must be one of alltick, polygon, "
                       "itick, got 'bloomberg'"):  # fmt: skip
        resolved(["--config", str(config)])
    with pytest.raises(SystemExit):  # a flag's choices are argparse's: usage and exit 2
        resolved(["--provider", "bloomberg"])


def test_a_code_the_vendor_cannot_carry_stops_the_start_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"polygon cannot carry 600519\.SH: it serves US codes "
                       r"only \(and 1 more\): drop it"):  # fmt: skip
        with_token("--provider", "polygon", "--codes", "AAPL,600519,700.HK")
    with pytest.raises(ConfigError, match=r"itick cannot carry 920118\.BJ"):
        with_token("--provider", "itick", "--codes", "920118")
    with pytest.raises(ConfigError, match="polygon's books have at most 1 level a side"):
        with_token("--provider", "polygon", "--codes", "AAPL", "--depth", "5")
    with pytest.raises(ConfigError, match=r"1,200 codes do not fit: 1 token x 1 connection x "
                       r"500 codes hold 500; give more tokens \(--token a,b,\.\.\.\)"):  # fmt: skip
        with_token("--provider", "itick", "--codes", ",".join(a_share_universe()[:1200]))
    with pytest.raises(ConfigError, match="alltick cannot subscribe a whole market"):
        with_token("--all-codes")
    settings = with_token("--provider", "polygon", "--all-codes")
    assert settings.codes == ["*.US"]


def test_replay_for_a_vendor_lists_its_market_and_gives_enough_tokens() -> None:
    settings, replay = build_settings(resolved(["--provider", "itick", "--replay"]))
    assert replay is not None and replay.provider == "itick" and replay.max_conns == 1
    assert len(settings.codes) > 5000 and not any(c.endswith(".BJ") for c in settings.codes)
    assert len(settings.tokens) == -(-len(settings.codes) // 500) and settings.token == replay.token
    _, replay = build_settings(resolved(["--provider", "polygon", "--replay"]))
    assert replay is not None and "BRK.B.US" in replay.codes and len(replay.codes) == 8000
    settings, replay = build_settings(resolved(["--provider", "itick", "--replay",
                                                "--max-conns", "4"]))  # fmt: skip
    assert replay is not None and replay.max_conns == settings.max_conns == 4  # the same plan
    assert len(settings.tokens) == -(-len(settings.codes) // 2000)


def test_a_journal_is_served_as_the_vendor_it_was_recorded_from(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, "t")
    journal.event(1, 0, "connect", url="ws://x/stocks", provider="polygon")
    journal.close()
    settings, _ = replay(["--journal", str(tmp_path)])
    assert settings.provider == "polygon" and settings.max_conns == 1  # and its plan
    with pytest.raises(ConfigError, match=f"the journal {tmp_path} was recorded from polygon, "
                       "not alltick: drop --provider or give --provider polygon"):  # fmt: skip
        replay(["--journal", str(tmp_path), "--provider", "alltick"])


def test_replay_sessions_options_fill_in_the_day_and_refuse_what_cannot_be_played() -> None:
    settings, _ = replay(["--sessions", "--day-minutes", "10", "--session-start", "11:20",
                          "--mute", "600519.SH@10:30", "--mute", "600519.SH@11:00"])  # fmt: skip
    assert settings.sessions and settings.day_minutes == 10.0
    assert settings.session_start == "11:20" and len(settings.mutes) == 2
    assert settings.session_date  # the latest trading day, filled in for the worker and report
    settings, _ = replay(["--sessions", "--session-date", "2026-12-03"])
    assert settings.session_date == "2026-12-03" and settings.day_minutes is None  # real time
    assert settings.session_days == 1
    settings, _ = replay(["--sessions", "--session-date", "2026-12-03", "--session-days", "3"])
    assert settings.session_days == 3
    for argv, says in (
        (["--sessions", "--session-date", "2026-10-01"], "2026-10-01 is not a trading day"),
        (["--session-date", "2026-12-03"], "--session-date needs --sessions"),
        (["--mute", "600519.SH@10:30"], "--mute needs --sessions"),
        (["--sessions", "--burst"], "drop --burst"),
        (["--sessions", "--session-start", "16:00"], "outside the simulated day"),
        (["--sessions", "--day-minutes", "0"], "--day-minutes must be > 0"),
        (["--session-days", "2"], "--session-days needs --sessions"),
        (["--sessions", "--session-days", "0"], "--session-days must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=says):
            replay(argv)


def test_run_forwards_its_replay_sessions_options_under_their_own_names() -> None:
    _, server = build_settings(resolved(["--replay", "--replay-sessions", "--replay-day-minutes",
                                         "10", "--replay-session-date", "2026-12-03",
                                         "--replay-mute", "600519.SH@10:30",
                                         "--replay-session-days", "2"]))  # fmt: skip
    assert server is not None and server.sessions
    assert (server.session_date, server.day_minutes, server.mutes, server.session_days) == (
        "2026-12-03", 10.0, ["600519.SH@10:30"], 2)  # fmt: skip
    with pytest.raises(ConfigError, match="--replay-day-minutes needs --replay-sessions"):
        build_settings(resolved(["--replay", "--replay-day-minutes", "10"]))


def test_the_round_the_clock_replay_takes_plain_minute_bars_unless_told() -> None:
    """The built-in market stamps the wall clock: exchange-hour bars would be none at night."""
    assert build_settings(resolved(["--replay"]))[0].bar_sessions == "none"
    sessions = ["--replay", "--replay-sessions", "--replay-session-date", "2026-12-02"]
    assert build_settings(resolved(sessions))[0].bar_sessions == "exchange"
    told = ["--replay", "--bar-sessions", "exchange"]
    assert build_settings(resolved(told))[0].bar_sessions == "exchange"
    assert build_settings(resolved(["--codes", "600519", "--token", "t"]))[0].bar_sessions == (
        "exchange"
    )  # a vendor's feed
