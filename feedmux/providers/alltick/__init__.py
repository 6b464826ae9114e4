"""AllTick (https://alltick.co): the client protocol, its rules and reply codes, and the replay
server's rules and frames. ``PROVIDER`` is what the rest of feedmux sees."""

from feedmux.providers.alltick.provider import PROVIDER

__all__ = ["PROVIDER"]
