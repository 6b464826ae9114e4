"""Link faults the replay server can inject on one connection (``feedmux replay --fault``).

Each is what a broken or hostile vendor edge might send; the client must drop and rebuild the
hit connection quickly (well inside its watchdog) and lose nothing on the others. The bytes
are raw RFC 6455 frames, written straight to the transport: websockets itself never sends
them.
"""

from __future__ import annotations

FAULTS = ("huge-header", "oversized-control", "reserved-opcode", "close-1001", "envelope-error")

# A text frame declaring 2**40 bytes; then junk trickles in (HUGE_CHUNK every HUGE_EVERY_S),
# which keeps a socket busy for ever but never completes a frame.
HUGE_HEADER = bytes((0x81, 127)) + (1 << 40).to_bytes(8, "big")
HUGE_CHUNK = b"x" * 65536
HUGE_EVERY_S = 0.05
# A ping with 126 bytes of payload (control frames carry at most 125).
OVERSIZED_CONTROL = bytes((0x89, 126)) + (126).to_bytes(2, "big") + b"p" * 126
# Opcode 0x3 is reserved for data frames no extension defines.
RESERVED_OPCODE = bytes((0x83, 5)) + b"hello"
CLOSE_CODE, CLOSE_REASON = 1001, "going away"

RAW_FAULTS: dict[str, bytes] = {
    "huge-header": HUGE_HEADER,
    "oversized-control": OVERSIZED_CONTROL,
    "reserved-opcode": RESERVED_OPCODE,
}
