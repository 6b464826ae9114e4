"""Passwords out of text meant for people: a URL's (``scheme://user:pw@host``, the user name
may be empty, as in ``redis://:pw@host``), a NATS URL's token (``nats://TOKEN@host``: there the
user part alone is the secret) and a libpq ``password=`` value. One mask for every
store, relay and setting shown in logs, errors, status and ``config show``."""

from __future__ import annotations

import re

# A password runs to the last "@" of its URL (one left unescaped must not show its tail), and
# may hold a comma; a comma followed by "scheme://" starts the next URL of a list (--nats).
_PASSWORD = re.compile(
    r"(://[^:/@\s,]*:)(?:(?!,[a-z][a-z0-9+.-]*://)\S)*@"
    r"|((?:nats|tls|wss?)://)[^:/@\s,]+@|(password=)\S+"
)


def mask_passwords(text: str) -> str:
    def masked(m: re.Match[str]) -> str:
        if m.group(3):
            return f"{m.group(3)}***"
        return f"{m.group(1) or m.group(2)}***@"

    return _PASSWORD.sub(masked, text)
