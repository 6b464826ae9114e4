"""Polygon.io (now Massive, https://massive.com): the stocks WebSocket's client protocol, and
the replay server's rules and frames. ``PROVIDER`` is what the rest of feedmux sees."""

from feedmux.providers.polygon.provider import PROVIDER

__all__ = ["PROVIDER"]
