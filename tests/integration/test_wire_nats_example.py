"""docs/wire.md's JetStream consumer without feedmux, taken from the page as it is and run
against a stream a shard's publisher filled: it decodes every message, each with its code
(escapes undone), values and Nats-Msg-Id."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedmux import families
from feedmux.families import Family
from feedmux.jetstream import subjects
from feedmux.model import Bar, Depth, Tick
from tests.component.test_nats_subscriber import market, payload, publish, publisher
from tests.conftest import wait_for
from tests.nats_servers import Target, local_target

pytestmark = pytest.mark.integration

WIRE = Path(__file__).parents[2] / "docs" / "wire.md"
HEADING = "### A JetStream consumer without feedmux"


@pytest.fixture
def target() -> Iterator[Target]:
    yield from local_target()


def example(target: Target) -> str:
    """The page's first Python block after HEADING, pointed at the test's server and stream."""
    text = WIRE.read_text()
    assert HEADING in text
    code = re.search(r"```python\n(.*?)```", text.split(HEADING, 1)[1], re.DOTALL)
    assert code is not None
    source = code.group(1)
    for name, value in (("URL", target.url), ("STREAM", target.stream),
                        ("PREFIX", target.prefix)):  # fmt: skip
        source, found = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, flags=re.M)
        assert found == 1, name
    return source


def expected_line(seq: int, family: Family, code: str, item: Tick | Depth | Bar) -> str:
    """What the example prints for the message, from what was published."""
    msg_id = subjects.message_id("alltick", family, family.decoder.decode(payload(family, item, 1)))
    if isinstance(item, Tick):
        return f"{seq} {code} trade {item.seq} {item.price} {item.volume} {msg_id}"
    if isinstance(item, Depth):
        bid, ask = [list(item.bids[0])], [list(item.asks[0])]  # msgpack gives lists
        return f"{seq} {code} book {item.seq} {bid} {ask} {msg_id}"
    return f"{seq} {code} bar {item.minute_ns} {item.close} {item.count} {msg_id}"


def test_the_documented_consumer_decodes_every_message(target: Target, tmp_path: Path) -> None:
    sent = market(3)  # trades, books and bars of 24 codes, BRK.B.US among them
    with publisher(target) as shard:
        publish(shard, sent)
    script = tmp_path / "consumer.py"
    script.write_text(example(target))
    out = tmp_path / "out.txt"
    with out.open("w") as printed:
        proc = subprocess.Popen([sys.executable, str(script)], stdout=printed,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        wait_for(lambda: len(out.read_text().splitlines()) >= len(sent) or proc.poll() is not None,
                 30, "the example to print every message")  # fmt: skip
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert out.read_text().splitlines() == [
        expected_line(seq, family, code, item) for seq, (family, code, item) in enumerate(sent, 1)
    ], err
    assert {f for f, _, _ in sent} == {families.TRADES, families.BOOKS, families.BARS}
    assert "BRK.B.US" in {code for _, code, _ in sent}
