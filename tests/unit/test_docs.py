"""The CLI reference is generated from --help: fail when the committed copy is out of date."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from feedmux.ops import clidoc

ROOT = Path(__file__).resolve().parents[2]
# argparse's help layout changes between Python versions; CI runs the version docs are made on.
pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="docs/cli.md is generated with Python 3.11's argparse"
)


def test_docs_cli_md_is_what_help_prints() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == clidoc.reference(), (
        "docs/cli.md is out of date: run python -m feedmux.ops.clidoc")  # fmt: skip


def test_readme_command_table_is_generated() -> None:
    readme = (ROOT / "README.md").read_text()
    assert clidoc.readme_with_table(readme) == readme, (
        "README.md's command table is out of date: run python -m feedmux.ops.clidoc")  # fmt: skip


def test_every_command_and_option_is_in_the_reference() -> None:
    text = clidoc.reference()
    for name in ("feedmux run", "feedmux status", "feedmux snapshot", "feedmux config show",
                 "feedmux keygen"):  # fmt: skip
        assert f"## `{name}`" in text
    for option in ("--metrics-port", "--min-move", "--public", "--curve-secret", "--config"):
        assert option in text
