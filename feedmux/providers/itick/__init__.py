"""iTick (https://itick.org) stocks: the client protocol with feedmux's own tick identity (iTick
numbers nothing), and the replay server's rules and frames. ``PROVIDER`` is what the rest of
feedmux sees."""

from feedmux.providers.itick.provider import PROVIDER

__all__ = ["PROVIDER"]
