import json
import subprocess
import sys
from collections import Counter

from feedmux.routing import Router, shard_of
from feedmux.simulator.market import a_share_universe


def test_shard_is_crc32_mod_n() -> None:
    # Known values: any other implementation (e.g. hash()) would route differently.
    assert [shard_of(c, 8) for c in ("600519.SH", "000001.SZ", "AAPL.US")] == [5, 3, 1]


def test_same_shard_in_another_process() -> None:
    codes = a_share_universe()[:200]
    here = [shard_of(c, 8) for c in codes]
    script = (
        "import sys, json; from feedmux.routing import shard_of; "
        "print(json.dumps([shard_of(c, 8) for c in sys.argv[1:]]))"
    )
    out = subprocess.run([sys.executable, "-c", script, *codes], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"})  # fmt: skip
    assert json.loads(out.stdout) == here


def test_full_market_spreads_evenly_over_8_shards() -> None:
    counts = Counter(shard_of(c, 8) for c in a_share_universe())
    assert len(counts) == 8
    assert max(counts.values()) < 1.25 * min(counts.values())


def test_router_caches_but_agrees() -> None:
    router = Router(5)
    for code in a_share_universe()[:500]:
        assert router(code) == router(code) == shard_of(code, 5)
