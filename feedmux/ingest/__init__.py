"""The receiver's parts: each connection's state (``connection``) and the table that drives
the links (``connections``), subscriptions, the journal, routing ticks to shards (``fanout``),
the bus sender with its delivery ledger and spill, the control desk and the saved universe
(wiring: ``workers/receiver.py``)."""
