"""Passwords out of text meant for people: a URL's (``scheme://user:pw@host``, the user name
may be empty, as in ``redis://:pw@host``) and a libpq ``password=`` value. One mask for every
store, relay and setting shown in logs, errors, status and ``config show``."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@|(password=)\S+")


def mask_passwords(text: str) -> str:
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(2)) + "***" + ("@" if m.group(1) else ""),
                         text)  # fmt: skip
