"""Permanent vendor errors stop the run with a clear message and a non-zero exit; transient
ones keep retrying; a code the vendor refuses is named and leaves the saved universe."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedmux.simulator.market import a_share_universe
from feedmux.stats.receiver import ReceiverStats
from tests.conftest import http_serving, scaled, wait_for
from tests.integration.helpers import TOKEN, feedmux, receiver_in, start_replay, stop

pytestmark = pytest.mark.integration

EXIT_VENDOR = 3
GOOD = a_share_universe()[::700][:3]
REFUSED = a_share_universe()[1]  # a well-formed code the replay server does not list
WRONG_TOKEN = "wrong-token-0123456789abcdef"
PATH = "/quote-stock-b-ws-api"  # where a WebSocket URL would point
PAGE_SECRET = "second-line-of-the-page"  # must never reach the output
# The bad-code search takes one request spacing per step; these tests are not about spacing.
FAST = ("--cross-interval-ms", "500")


def _run(tmp_path: Path, url: str, codes: list[str], *flags: str) -> subprocess.Popen[str]:
    return feedmux("run", "--url", url, "--codes", ",".join(codes), "--shards", "2",
                   "--data-dir", str(tmp_path / "data"), *flags)  # fmt: skip


def _finish(run: subprocess.Popen[str], timeout: float = 40) -> tuple[int, str]:
    """The run's exit code and output once it ends by itself (stopped if it does not)."""
    try:
        output, _ = run.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        code, output = stop(run)
        raise AssertionError(f"the run did not end by itself (exit {code}):\n{output}") from None
    return run.returncode, output


def _receiver(run_dir: Path) -> ReceiverStats:
    return receiver_in(run_dir)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "data" / "run" / "feedmux.log").read_text()


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[str]:
    """A replay server listing GOOD only, requests of the token 0.5 s apart; yields its URL."""
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(" ".join(GOOD))
    server, _, url = start_replay(tmp_path, "--rate", "200", "--symbols-file", str(symbols),
                                  *FAST)  # fmt: skip
    try:
        yield url
    finally:
        stop(server)


def test_a_wrong_token_stops_the_run_with_a_clear_message(tmp_path: Path, replay: str) -> None:
    run = _run(tmp_path, replay, GOOD, "--token", WRONG_TOKEN, "--give-up-after", "2")
    code, output = _finish(run)
    assert code == EXIT_VENDOR, output
    assert "vendor refused the token (ret=401 token invalid) 2 times" in output
    assert "check --token / FEEDMUX_TOKEN" in output
    assert "stopped cleanly" not in output
    assert "receiver exited unexpectedly" not in output  # not restarted
    assert WRONG_TOKEN not in output and WRONG_TOKEN not in _log(tmp_path)


def test_a_typo_in_the_urls_path_stops_the_run(tmp_path: Path, replay: str) -> None:
    typo = replay.replace("/quote-stock-b-ws-api", "/quote-stock-ws-api")
    code, output = _finish(_run(tmp_path, typo, GOOD, "--give-up-after", "1"))
    assert code == EXIT_VENDOR, output  # the server answers HTTP 404, as a web server does
    assert f"{typo} is not a WebSocket endpoint: HTTP 404" in output


class _Page(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:
        body = (f"<html><head><title>Not here</title></head>\n<body>{PAGE_SECRET}\n"
                + "filler line\n" * 400 + "</body></html>\n").encode()  # fmt: skip
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "said"),
    [(404, "{url} is not a WebSocket endpoint: HTTP 404 1 time: check --url"),
     (200, "{url} is not a WebSocket endpoint: HTTP 200 1 time: check --url"),
     (401, "vendor refused the token (HTTP 401) 1 time: check --token / FEEDMUX_TOKEN")],
)  # fmt: skip
def test_a_url_that_is_not_a_websocket_or_refuses_the_token_stops_the_run(
    tmp_path: Path, status: int, said: str
) -> None:
    with http_serving(type("Page", (_Page,), {"status": status}), PATH) as url:
        code, output = _finish(_run(tmp_path, url, GOOD, "--give-up-after", "1"))
    assert code == EXIT_VENDOR, output
    assert said.format(url=url) in output
    log = _log(tmp_path)
    assert PAGE_SECRET not in output and PAGE_SECRET not in log
    assert "filler line" not in output
    assert TOKEN not in output and TOKEN not in log  # the URL asked for carried it
    assert f"connect failed: HTTP {status}: <html><head><title>Not here</title></head>" in log


class _EchoingVerdict(_Page):
    """A vendor that quotes the token it was given in its JSON refusal."""

    def do_GET(self) -> None:
        token = self.path.partition("token=")[2]
        body = json.dumps({"ret": 401, "msg": f"token {token} invalid"}).encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_refusal_that_quotes_the_token_never_shows_it(tmp_path: Path) -> None:
    with http_serving(_EchoingVerdict, PATH) as url:
        code, output = _finish(_run(tmp_path, url, GOOD, "--give-up-after", "1"))
    assert code == EXIT_VENDOR, output
    assert "vendor refused the token (HTTP 401, ret=401 token *** invalid)" in output
    stats = (tmp_path / "data" / "run" / "stats" / "receiver.json").read_text()
    for where in (output, _log(tmp_path), stats):
        assert TOKEN not in where


@pytest.mark.slow
def test_a_refused_code_is_named_and_leaves_the_saved_universe(tmp_path: Path, replay: str) -> None:
    run = _run(tmp_path, replay, [*GOOD, REFUSED], *FAST)
    run_dir = tmp_path / "data" / "run"
    try:
        wait_for(lambda: _receiver(run_dir).codes_rejected == 1, 40, "the refusal")
        assert _receiver(run_dir).codes_subscribed == len(GOOD)
        listing = feedmux("subscriptions", "--run-dir", str(run_dir))
        listed, _ = listing.communicate(timeout=scaled(30))
        assert f"rejected {REFUSED}: ret=600 code invalid" in listed
        assert REFUSED not in listed.replace(f"rejected {REFUSED}", "")
        saved = json.loads((tmp_path / "data" / "subscriptions.json").read_text())
        assert sorted(saved["codes"]) == sorted(GOOD)
        assert saved["refused"] == {REFUSED: "ret=600 code invalid"}
        status = feedmux("status", "--json", "--run-dir", str(run_dir))
        shown = json.loads(status.communicate(timeout=scaled(30))[0])
        assert shown["codes_rejected"] == 1 and shown["rejected"] == [REFUSED]
        wait_for(lambda: _receiver(run_dir).ticks > 0, 30, "ticks")
    finally:
        code, output = stop(run)
    assert code == 0, output
    assert "codes 3/3 (refused 1)" in output  # the progress line counts it
    assert f"vendor refused {REFUSED} (ret=600 code invalid)" in _log(tmp_path)


def test_a_universe_of_refused_codes_ends_with_no_tick_received(
    tmp_path: Path, replay: str
) -> None:
    code, output = _finish(_run(tmp_path, replay, [REFUSED], *FAST))
    assert code == EXIT_VENDOR, output
    assert f"the vendor refused every code: {REFUSED} (ret=600 code invalid)" in output
    assert "no tick received in" in output and "check the codes, the token and the URL" in output


def test_a_refused_connection_is_retried_until_the_server_appears(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/quote-stock-b-ws-api"
    run = _run(tmp_path, url, GOOD, "--give-up-after", "1")
    run_dir = tmp_path / "data" / "run"
    server = None
    try:
        wait_for(lambda: (run_dir / "feedmux.log").exists() and
                 "connect failed" in _log(tmp_path), 30, "a refused connect")  # fmt: skip
        symbols = tmp_path / "symbols.txt"
        symbols.write_text(" ".join(GOOD))
        server, _, _ = start_replay(tmp_path, "--rate", "200", "--symbols-file", str(symbols),
                                    "--port", str(port))  # fmt: skip
        wait_for(lambda: _receiver(run_dir).ticks > 0, 40,
                 "ticks once the server is up")  # fmt: skip
    finally:
        code, output = stop(run)
        if server is not None:
            stop(server)
    assert code == 0, output
    assert "stopped cleanly" in output
