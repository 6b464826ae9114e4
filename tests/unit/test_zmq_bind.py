"""A port in use is a start-up error that names the endpoint, not a ZMQError traceback."""

from __future__ import annotations

import pytest
import zmq

from feedmux.errors import ConfigError
from feedmux.transports import zmq as zt


def test_a_port_in_use_names_the_endpoint() -> None:
    ctx = zt.context()
    try:
        first = zt.pull(ctx, "tcp://127.0.0.1:*")
        endpoint = first.getsockopt_string(zmq.LAST_ENDPOINT)
        with pytest.raises(ConfigError, match=f"cannot listen on {endpoint}: Address already"):
            zt.pub(ctx, endpoint)
    finally:
        ctx.destroy(linger=0)
