"""Benchmarks: each configuration runs in fresh subprocesses against the replay server."""
