"""Vendor protocol adapters: sans-I/O, bytes in and events out."""
