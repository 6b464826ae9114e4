"""Thin I/O adapters: the only modules that construct WebSocket or ZeroMQ sockets."""
