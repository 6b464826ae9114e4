"""Secrets out of text meant for people."""

from __future__ import annotations

import pytest

from feedmux.passwords import mask_passwords


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u:p@w@h/db", "postgresql://u:***@h/db"),
        ("host=h password=secret dbname=x", "host=h password=*** dbname=x"),
        ("postgresql://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"),
        # NATS takes a token alone as the user part: that is the secret
        ("nats://s3cr3t@h:4222", "nats://***@h:4222"),
        ("postgresql://feed:pa,ss@db/feed", "postgresql://feed:***@db/feed"),  # not a list
        ("redis://:a,b@h:6379/0", "redis://:***@h:6379/0"),
        ("nats://u:p@h:4222,nats://v:q@k:4222", "nats://u:***@h:4222,nats://v:***@k:4222"),
        ("nats://a:4222,tls://tok@b:4222", "nats://a:4222,tls://***@b:4222"),
        (
            "cannot reach NATS at nats://u:pw@h:4222: refused",
            "cannot reach NATS at nats://u:***@h:4222: refused",
        ),
    ],
)
def test_passwords_and_tokens_are_masked_and_nothing_else(text: str, shown: str) -> None:
    assert mask_passwords(text) == shown
