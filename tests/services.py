"""The real PostgreSQL and Redis these tests use, and small disks they fill: skipped with a
reason when absent, failed instead when FEEDMUX_REQUIRE_SERVICES=1 (CI)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis

POSTGRES_URL = os.environ.get("FEEDMUX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FEEDMUX_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _absent(what: str, why: object, variable: str = "FEEDMUX_TEST_POSTGRES") -> None:
    _missing(f"{what} is not reachable ({why}); set {variable} or start it")


def _missing(message: str) -> None:
    if os.environ.get("FEEDMUX_REQUIRE_SERVICES") == "1":
        pytest.fail(f"FEEDMUX_REQUIRE_SERVICES=1 and {message}")
    pytest.skip(message)


def postgres_schema() -> Iterator[str]:
    """A URL whose tables live in a fresh schema, dropped afterwards."""
    try:
        admin = psycopg.connect(POSTGRES_URL, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        _absent(f"PostgreSQL at {POSTGRES_URL}", str(exc).strip().splitlines()[0])
        raise  # unreachable: _absent skips or fails
    schema = f"feedmux_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def redis_prefix() -> Iterator[tuple[str, str]]:
    """(URL, a fresh stream prefix); the prefix's streams are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _absent(f"Redis at {REDIS_URL}", exc, "FEEDMUX_TEST_REDIS")
    prefix = f"feedmux-test-{uuid.uuid4().hex[:10]}"
    try:
        yield REDIS_URL, prefix
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``where`` for one test (root needed), always unmounted."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(where)], check=False, capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        _absent("a tmpfs mount", mounted.stderr.strip() or "mount failed", "a root user")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


CHROMIUM = os.environ.get("FEEDMUX_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FEEDMUX_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def browser(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven by Selenium (Debian's chromium and chromium-driver)."""
    from selenium import webdriver  # noqa: PLC0415 (only the page's tests load it)
    from selenium.common.exceptions import WebDriverException  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            _missing(f"{path} is not installed (apt-get install {package})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        _missing(f"chromium does not start: {str(exc).splitlines()[0]}")
        raise
    try:
        yield driver
    finally:
        driver.quit()
