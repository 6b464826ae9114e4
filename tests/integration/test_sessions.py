"""Markets keep hours, end to end: a compressed A-share day (auctions, lunch, after-hours)
played by the replay server through ``feedmux run --shards 8`` with the default bars."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from feedmux import Subscriber, read_bars, read_ticks
from feedmux.client.control import Control
from feedmux.errors import FeedmuxError
from feedmux.market.sessions import Phase, load_sessions
from feedmux.model import Bar
from feedmux.simulator.market import a_share_universe
from tests.a_share_bars import COLUMNS, SHANGHAI, a_share_bars
from tests.conftest import scaled
from tests.integration.helpers import feedmux, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = "2026-12-02"  # a Wednesday, a trading day
SILENT_AFTER_S = 90  # every fed code trades at least once a minute: none is silent by chance


def at(clock: str) -> int:
    local = dt.datetime.fromisoformat(f"{DAY}T{clock}").replace(tzinfo=SHANGHAI)
    return int(local.timestamp()) * 10**9


def _codes() -> list[str]:
    """40 codes of every board: STAR and ChiNext ones trade after hours too."""
    universe = a_share_universe()
    picked = universe[::150][:36]
    picked += [c for c in universe if c.startswith("688")][:2]
    picked += [c for c in universe if c.startswith("300")][:2]
    return sorted(set(picked))


def test_a_compressed_a_share_day_has_its_bars_and_no_silence_at_lunch_or_after_the_close(
    tmp_path: Path,
) -> None:
    codes = _codes()
    muted = codes[0]  # the replay stops feeding it at 10:30
    data_dir = tmp_path / "data"
    run_dir = data_dir / "run"
    run = feedmux("run", "--replay", "--replay-sessions", "--replay-session-date", DAY,
                  "--replay-day-minutes", "4", "--replay-mute", f"{muted}@10:30",
                  "--replay-rate", "200", "--replay-warmup", "1", "--shards", "8",
                  "--codes", ",".join(codes), "--silent-after", str(SILENT_AFTER_S),
                  "--bar-sessions", "exchange", "--bar-label", "end",  # a new store's defaults
                  "--data-dir", str(data_dir), "--display", "plain")  # fmt: skip
    sessions = load_sessions()
    samples: list[tuple[int, Phase, set[str]]] = []  # (data clock, SH phase, silent codes)
    published: dict[tuple[str, int], Bar] = {}
    control = Control(run_dir, timeout=5.0)
    deadline = time.monotonic() + scaled(420)
    try:
        while not (run_dir / "stats").is_dir():
            assert run.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        with Subscriber(run_dir=run_dir, shards=8, trades=False, bars=True,
                        on_gap="count") as bars:  # fmt: skip
            while not samples or samples[-1][0] < at("15:25:00"):
                assert run.poll() is None, "the run stopped"
                assert time.monotonic() < deadline, f"the day did not end: {samples[-1:]}"
                while (item := bars.recv(timeout=0.2)) is not None:
                    if isinstance(item, Bar):
                        published[(item.code, item.minute_ns)] = item
                try:
                    silence = control.silence(SILENT_AFTER_S, sessions)
                except FeedmuxError:  # still starting
                    continue
                if at("09:00:00") <= silence.now_ns < at("23:00:00"):  # else: no tick yet
                    phase = sessions.phase("SH", silence.now_ns)
                    samples.append((silence.now_ns, phase, set(silence.silent)))
            assert bars.gaps == 0
    finally:
        code, output = stop(run)
    assert code == 0, output

    # Silence: none at lunch, in the auctions or after the close; the muted code in the
    # afternoon's continuous trading (its subscription is older than the threshold by then).
    quiet = [s for s in samples if s[1] != Phase.CONTINUOUS]
    assert {s[1] for s in quiet} >= {Phase.LUNCH, Phase.CLOSED}
    assert all(not silent for _, _, silent in quiet), [s for s in quiet if s[2]]
    assert all(silent <= {muted} for _, _, silent in samples)
    afternoon = [s for s in samples if s[1] == Phase.CONTINUOUS and s[0] >= at("13:10:00")]
    assert any(muted in silent for _, _, silent in afternoon)
    reports = re.findall(r"silent codes \(subscribed[^\n]*", output)
    named = [line for line in reports if not line.rstrip().endswith(": 0")]
    assert named and all(muted in line and line.count(".S") == 1 for line in named), reports

    # Bars: 240 a code, as pandas computes them from the stored ticks.
    ticks = read_ticks(data_dir)
    assert set(ticks["code"]) == set(codes)
    frame = pd.DataFrame({"code": ticks["code"], "time": ticks["time"].astype("int64"),
                          "price": ticks["price"], "volume": ticks["volume"],
                          "turnover": ticks["turnover"]})  # fmt: skip
    expected = a_share_bars(frame, DAY)
    stored = read_bars(data_dir)
    stored["minute"] = stored["minute"].astype("int64")
    stored = stored.sort_values(["code", "minute"]).reset_index(drop=True)[COLUMNS]
    assert stored.groupby("code").size().to_dict() == dict.fromkeys(codes, 240)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    # The auctions: the 09:25 trade opens the 09:31 bar, the 15:00 one closes the 15:00 bar.
    auction = frame[frame["time"] == at("09:25:00")].set_index("code")["price"]
    closing = frame[frame["time"].between(at("15:00:00"), at("15:00:01"))]
    assert len(auction) == len(codes) and len(closing) == len(codes) - 1  # not the muted one
    first = stored.groupby("code").first()
    assert (first["minute"] == at("09:31:00")).all()
    assert first["open"].to_dict() == auction.to_dict()
    last = stored.groupby("code").last()
    assert (last["minute"] == at("15:00:00")).all()
    assert last.loc[closing["code"], "close"].tolist() == closing["price"].tolist()
    # The PUB B| topic carried the same bars (each minute's last version).
    sent = pd.DataFrame([b.row() for b in published.values()], columns=COLUMNS)
    sent = sent.sort_values(["code", "minute"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(sent, stored, check_dtype=False)
    # And the archive of the day.
    archive = tmp_path / "archive"
    exported = feedmux("export", "--date", DAY, "--data-dir", str(data_dir), "--out",
                       str(archive))  # fmt: skip
    assert exported.wait(scaled(60)) == 0, exported.communicate()[0]
    archived = read_bars(archive)
    archived["minute"] = archived["minute"].astype("int64")
    archived = archived.sort_values(["code", "minute"]).reset_index(drop=True)[COLUMNS]
    pd.testing.assert_frame_equal(archived, stored, check_dtype=False)
