"""The library API for consumers: live ticks, snapshots, subscription control, stored data
into pandas, the Parquet archive and the Redis Streams reader."""
