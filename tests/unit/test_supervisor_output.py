"""What `feedmux run` tells its reader: a display that survives the reader going away, and a
closing line that names the stores actually written."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from feedmux.ops.config import Settings
from feedmux.ops.display import open_display
from feedmux.ops.status import build_status
from feedmux.ops.supervisor import Supervisor
from feedmux.stats import RunStats, write_stats
from tests.stats_samples import receiver_stats


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_display_whose_reader_went_away_is_told_once_and_stays_quiet() -> None:
    lost: list[OSError] = []
    display = open_display(_ClosedPipe(), live=False, on_gone=lost.append)
    display.say("replay server: ws://...")  # no exception: the run goes on
    display.say("2 shard workers up")
    display.close()
    assert len(lost) == 1 and isinstance(lost[0], BrokenPipeError)


@pytest.mark.parametrize(
    ("stores", "named", "hidden"),
    [
        ([], ["feedmux.read_ticks('DATA')"], []),
        (["sqlite:///srv/ticks"], ["feedmux.read_ticks('/srv/ticks')"], ["'DATA'"]),
        (["postgresql://ops:s3cret@db.example/ticks", "sqlite://"],
         ["feedmux.read_ticks('postgresql://ops:***@db.example/ticks')",
          "feedmux.read_ticks('DATA')"], ["s3cret"]),
    ],
)  # fmt: skip
def test_the_closing_line_names_the_stores_written(
    tmp_path: Path, stores: list[str], named: list[str], hidden: list[str]
) -> None:
    data_dir = str(tmp_path / "data")
    settings = Settings(url="ws://127.0.0.1:1/x", token="t", codes=["600000.SH"], shards=1,
                        data_dir=data_dir, stores=stores)  # fmt: skip
    settings.paths.prepare()
    write_stats(settings.paths.stats_dir, receiver_stats(final=True, unconfirmed=0, ticks=7))
    said: list[str] = []
    assert Supervisor(settings, said.append).verdict({}) == 0
    closing = said[-1].replace(data_dir, "DATA")
    assert closing.startswith("stopped cleanly: all 7 received ticks and books are stored")
    assert all(n in closing for n in named) and not any(h in closing for h in hidden), closing


def test_progress_lines_wait_for_a_measured_rate() -> None:
    out = io.StringIO()
    display = open_display(out, live=False)
    display._next = 0.0  # type: ignore[attr-defined]  # a line is due now
    earlier = RunStats(receiver=receiver_stats(time_ns=10**9, ticks=5_000))
    first = build_status(None, earlier, 1)
    display.show(first, 2.0)
    assert out.getvalue() == ""  # no earlier reading: its rate would read 0/s
    later = RunStats(receiver=receiver_stats(time_ns=2 * 10**9, ticks=10_000))
    display.show(build_status(earlier, later, 1), 3.0)
    assert "received     10,000 ticks (   5,000/s)" in out.getvalue()
    display._next = 0.0  # type: ignore[attr-defined]
    display.show(build_status(None, later, 1), 4.0)  # a stuck receiver: still a line
    assert out.getvalue().count("received") == 2
