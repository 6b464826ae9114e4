"""A shard worker's parts: its state, snapshot cache, bars, threshold moves, batching and the
stores it writes. Process wiring is in ``workers/shard.py``."""
