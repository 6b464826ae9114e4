"""Vendor adapters, sans-I/O: bytes in, typed events out (``base`` is the interface).

The registry below is the one place outside a vendor's package that names it: adding a vendor
is its package plus one line here. The first listed is the default.
"""

from __future__ import annotations

import importlib
from typing import cast

from feedmux.errors import ConfigError
from feedmux.providers.base import Provider

# name -> the package whose PROVIDER implements providers.base.Provider, imported when used
VENDORS: dict[str, str] = {
    "alltick": "feedmux.providers.alltick",
    "polygon": "feedmux.providers.polygon",
    "itick": "feedmux.providers.itick",
}
DEFAULT_VENDOR = next(iter(VENDORS))


def provider(name: str = DEFAULT_VENDOR) -> Provider:
    """The vendor called ``name``."""
    package = VENDORS.get(name)
    if package is None:
        raise ConfigError(f"unknown vendor {name!r}; known: {', '.join(VENDORS)}")
    return cast(Provider, importlib.import_module(package).PROVIDER)
