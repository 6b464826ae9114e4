"""The receiver's parts: WebSocket links, the journal, subscriptions, the delivery ledger
and spill, routing ticks to shards, and the control desk (wiring: ``workers/receiver.py``)."""
