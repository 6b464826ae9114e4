"""A local vendor-compatible market: the replay server's pure parts (the vendor's own rules and
frames are its provider's)."""
