"""A local AllTick-compatible market: the replay server's pure parts."""
