"""NATS JetStream, the bus across machines (``--nats``): subject names and message ids
(``subjects``), the stream's settings and their check (``stream``), and the event loop thread the
asyncio client runs on (``loop``). The shard's publisher is feedmux/shard/jetstream.py; the
consumer is feedmux/client/jetstream.py (``NatsSubscriber``)."""
