import json
import logging
from pathlib import Path

import pytest
import zmq

from feedmux import wire
from feedmux.errors import ConfigError
from feedmux.ingest.control import ControlDesk
from feedmux.ingest.keeper import UniverseKeeper
from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ingest.universe import keep_universe, load_universe, save_universe
from feedmux.providers.alltick.provider import PACING
from feedmux.providers.alltick.provider import PROVIDER as ALLTICK
from feedmux.providers.alltick.server import ENVELOPE_ERROR
from feedmux.providers.polygon.provider import PROVIDER as POLYGON
from feedmux.writes import health
from tests.unit.test_subscriptions import answer

S = 1_000_000_000


def ack(manager: SubscriptionManager, now: int, ret: int = 200) -> None:
    """The server answers every request the manager sends now."""
    for index, message in manager.due(now):
        answer(manager, index, message, ret, "x", now)


def test_subscribe_is_answered_only_once_the_server_confirms() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)
    manager.on_connected(0, 0)
    ack(manager, 0)
    desk = ControlDesk(manager)
    answer, changed = desk.submit(b"id", wire.encode(wire.Subscribe(["000001.SZ"])), S)
    assert answer is None and changed and desk.answers(S) == []
    ack(manager, 2 * S)  # the token's spacing holds the request back
    assert desk.answers(2 * S) == []
    ack(manager, 4 * S)
    [(ident, raw)] = desk.answers(4 * S)
    reply = wire.control_reply_decoder.decode(raw)
    assert ident == b"id" and reply.error == "" and reply.rejected == {}
    assert sorted(reply.codes) == ["000001.SZ", "600519.SH"]
    assert reply.confirmed_age_s["600519.SH"] == 4.0


def test_no_wait_is_answered_at_once_and_list_too() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)
    desk = ControlDesk(manager)
    answer, changed = desk.submit(b"a", wire.encode(wire.Unsubscribe(["600519.SH"], False)), 0)
    assert answer is not None and changed
    listed, changed = desk.submit(b"b", wire.encode(wire.ListSubscriptions()), 0)
    assert listed is not None and not changed
    assert wire.control_reply_decoder.decode(listed).codes == []


def _waiting_on_a_change(ident: bytes) -> tuple[SubscriptionManager, ControlDesk]:
    """A subscribed connection, and a caller ``ident`` waiting on a code added at 1 s."""
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)
    manager.on_connected(0, 0)
    ack(manager, 0)
    desk = ControlDesk(manager)
    desk.submit(ident, wire.encode(wire.Subscribe(["000001.SZ"])), S)
    return manager, desk


def test_a_change_refused_for_its_envelope_waits_for_the_retry_and_is_confirmed() -> None:
    manager, desk = _waiting_on_a_change(b"first")
    assert len(manager.due(4 * S)) == 1
    session = manager.connections[0].session
    session.receive(ENVELOPE_ERROR, 4 * S)
    manager.on_reply(0, session.events.pop(), 4 * S)
    assert desk.answers(4 * S) == []  # sent again after a backoff: no error for a success
    desk.submit(b"second", wire.encode(wire.Subscribe(["000002.SZ"])), 5 * S)
    assert desk.answers(5 * S) == []
    ack(manager, 10 * S)  # 4 s + 6.6 s: not yet (a heartbeat goes out)
    assert desk.answers(10 * S) == []
    ack(manager, 12 * S)  # the retry, carrying both changes, confirmed
    answers = dict(desk.answers(12 * S))
    assert set(answers) == {b"first", b"second"}
    assert all(wire.control_reply_decoder.decode(raw).error == "" for raw in answers.values())
    assert manager.settled(["000001.SZ", "000002.SZ"], subscribed=True)


def test_a_change_whose_retries_are_refused_times_out_with_ret_and_msg() -> None:
    manager, desk = _waiting_on_a_change(b"id")
    session = manager.connections[0].session
    for now in range(4, 62):  # every subscription request refused for its envelope
        for _, message in manager.due(now * S):
            if json.loads(message)["cmd_id"] == 22004:
                session.receive(ENVELOPE_ERROR, now * S)
                manager.on_reply(0, session.events.pop(), now * S)
    [(_, raw)] = desk.answers(62 * S)
    error = wire.control_reply_decoder.decode(raw).error
    assert error.startswith("not confirmed by the server within 60 s")
    assert "ret=201 request header param invalid (sent again after a backoff)" in error


def test_a_removal_refused_for_good_is_answered_with_the_reason() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH", "000001.SZ"], 3000, PACING)
    manager.on_connected(0, 0)
    ack(manager, 0)
    desk = ControlDesk(manager)
    desk.submit(b"x", wire.encode(wire.Unsubscribe(["000001.SZ"])), S)
    ack(manager, 4 * S, ret=400)  # request data param invalid: not retried as is
    [(_, raw)] = desk.answers(4 * S)
    assert "ret=400" in wire.control_reply_decoder.decode(raw).error


def test_unconfirmed_change_times_out_with_a_reason() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)  # never connected
    desk = ControlDesk(manager)
    desk.submit(b"id", wire.encode(wire.Subscribe(["000001.SZ"])), 0)
    [(_, raw)] = desk.answers(61 * S)
    assert "not confirmed" in wire.control_reply_decoder.decode(raw).error


def test_garbage_request_gets_an_error_reply() -> None:
    answer, changed = ControlDesk(SubscriptionManager(ALLTICK, ["A.US"], 10, PACING)).submit(
        b"x", b"\xc1", 0
    )
    assert answer is not None and not changed
    assert "bad control request" in wire.control_reply_decoder.decode(answer).error


def test_a_code_the_vendor_cannot_carry_is_refused_naming_both_and_nothing_changes() -> None:
    manager = SubscriptionManager(POLYGON, ["AAPL.US"], 100, PACING)
    request = wire.Subscribe(["MSFT.US", "600519.SH"], False)
    answer, changed = ControlDesk(manager).submit(b"x", wire.encode(request), 0)
    assert answer is not None and not changed
    error = wire.control_reply_decoder.decode(answer).error
    assert error == "polygon cannot carry 600519.SH: it serves US codes only"
    assert manager.desired() == ["AAPL.US"]


def test_universe_round_trips_and_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    assert load_universe(tmp_path) is None
    save_universe(tmp_path, ["600519.SH", "AAPL.US"])
    assert load_universe(tmp_path) == ["600519.SH", "AAPL.US"]
    (tmp_path / "subscriptions.json").write_text("{broken")
    with pytest.raises(ConfigError, match="delete it or give --symbols-file"):
        load_universe(tmp_path)


def test_unsubscribing_a_code_never_subscribed_says_so_and_changes_nothing() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH", "000001.SZ"], 3000, PACING)
    desk = ControlDesk(manager)
    request = wire.Unsubscribe(["000001.SZ", "300750.SZ"], False)
    answer, changed = desk.submit(b"a", wire.encode(request), 0)
    assert answer is not None and not changed
    assert wire.control_reply_decoder.decode(answer).error == "never subscribed: 300750.SZ"
    assert sorted(manager.desired()) == ["000001.SZ", "600519.SH"]
    # Removed earlier (wait=False), then confirmed with a waiting call: no error.
    removed = wire.Unsubscribe(["000001.SZ"], False)
    for ident in (b"b", b"c"):
        answer, _ = desk.submit(ident, wire.encode(removed), 0)
        assert answer is not None and wire.control_reply_decoder.decode(answer).error == ""


def test_a_universe_that_cannot_be_written_is_reported_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a data dir that is a file: every write fails, like a full disk
    assert not keep_universe(blocker, ["600519.SH"])
    [failure] = [f for f in health.failures() if f.kind == "universe"]
    assert failure.failing and failure.failures == 1
    assert keep_universe(tmp_path, ["600519.SH"])  # room again
    assert load_universe(tmp_path) == ["600519.SH"]
    assert not health.failing("universe")


class FakeRouter:
    """The control ROUTER socket: requests in as ``[ident, b"", raw]``, answers out."""

    def __init__(self, *requests: tuple[bytes, object]) -> None:
        self.inbox = [[ident, b"", wire.encode(r)] for ident, r in requests]
        self.outbox: list[list[bytes]] = []

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.inbox:
            raise zmq.Again
        return self.inbox.pop(0)

    def send_multipart(self, parts: list[bytes], flags: int = 0) -> None:
        self.outbox.append(parts)


def test_serve_takes_every_waiting_request_and_answers_each_when_due() -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH"], 3000, PACING)
    manager.on_connected(0, 0)
    ack(manager, 0)
    desk = ControlDesk(manager)
    sock = FakeRouter((b"a", wire.Subscribe(["000001.SZ"])), (b"b", wire.ListSubscriptions()))
    assert desk.serve(sock, S)  # the desired set changed: the caller saves it
    assert [parts[0] for parts in sock.outbox] == [b"b"]  # the list now; "a" waits on the vendor
    assert not desk.serve(sock, 2 * S)
    ack(manager, 4 * S)
    assert not desk.serve(sock, 4 * S)
    ident, empty, raw = sock.outbox[-1]
    assert (ident, empty) == (b"a", b"")
    assert wire.control_reply_decoder.decode(raw).error == ""


def test_the_keeper_saves_changes_and_leaves_refused_codes_out(tmp_path: Path) -> None:
    manager = SubscriptionManager(ALLTICK, ["600519.SH", "000001.SZ"], 3000, PACING)
    keeper = UniverseKeeper(manager, tmp_path, logging.getLogger("test"))
    keeper.note_refused()  # nothing refused: nothing written
    assert load_universe(tmp_path) is None
    manager.on_connected(0, 0)
    ack(manager, 0, ret=600)  # a bad code in the list: the manager halves it ...
    while not manager.rejected:
        ack(manager, 4 * S * (1 + len(keeper.refused)), ret=600)
    keeper.note_refused()
    assert keeper.refused == manager.rejected
    assert load_universe(tmp_path) == manager.desired()
    blocker = tmp_path / "file"
    blocker.write_text("")  # a full disk
    keeper.data_dir = blocker
    keeper.save()
    assert keeper.unsaved
    keeper.data_dir = tmp_path
    keeper.retry()
    assert not keeper.unsaved
