"""The vendor boundary: outside ``feedmux/providers/<vendor>/`` no module imports a vendor or names
one in code, except the registry's line in ``feedmux/providers/__init__.py``.

Prose may name a vendor (docstrings, comments, ``--help`` texts: a flag that exists for the
default vendor's plans says so); code may not (imports, identifiers, other string literals).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ROOT / "feedmux" / "providers"
REGISTRY = PROVIDERS / "__init__.py"


def _vendors() -> list[str]:
    return sorted(p.name for p in PROVIDERS.iterdir() if (p / "__init__.py").is_file())


def _prose(tree: ast.AST) -> set[int]:
    """The string constants that are prose: docstrings and ``help=`` texts."""
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.add(id(value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            out.update(id(n) for n in ast.walk(node.value))
    return out


def _names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every import target, identifier and non-prose string literal, with its line."""
    prose = _prose(tree)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            out += [(line, a.name) for a in node.names]
            out += [(line, a.asname) for a in node.names if a.asname]
        elif isinstance(node, ast.ImportFrom):
            out.append((line, node.module or ""))
            out += [(line, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.Name):
            out.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            out.append((line, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append((line, node.name))
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            out.append((line, node.arg))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        ):
            out.append((line, node.value))
    return out


def seam_breaches(root: Path, vendors: list[str]) -> list[str]:
    """``file:line: name`` for each place outside a vendor's package that names a vendor."""
    found = []
    for folder in ("feedmux", "workers"):
        for path in sorted((root / folder).rglob("*.py")):
            inside = path.relative_to(root).parts[:3]
            tree = ast.parse(path.read_text())
            for line, name in _names(tree):
                for vendor in vendors:
                    if inside == ("feedmux", "providers", vendor) or vendor not in name.lower():
                        continue
                    registry = path == root / REGISTRY.relative_to(ROOT)
                    if registry and name in (vendor, f"feedmux.providers.{vendor}"):
                        continue  # the registry's one line
                    found.append(f"{path.relative_to(root)}:{line}: {name}")
    return found


def test_no_module_outside_a_vendor_package_imports_or_names_a_vendor() -> None:
    assert seam_breaches(ROOT, _vendors()) == []


def test_the_seam_check_catches_an_import_and_a_name(tmp_path: Path) -> None:
    (tmp_path / "feedmux" / "ingest").mkdir(parents=True)
    (tmp_path / "workers").mkdir()
    (tmp_path / "feedmux" / "ingest" / "x.py").write_text(
        '"""Prose may say AllTick."""\n'
        "from feedmux.providers.alltick.protocol import CMD_HEARTBEAT\n"
        "import feedmux.providers.alltick as vendor\n"
    )
    (tmp_path / "workers" / "y.py").write_text('URL = "wss://quote.alltick.co"\nALLTICK_URL = 1\n')
    assert seam_breaches(tmp_path, ["alltick"]) == [
        "feedmux/ingest/x.py:2: feedmux.providers.alltick.protocol",
        "feedmux/ingest/x.py:3: feedmux.providers.alltick",
        "workers/y.py:1: wss://quote.alltick.co",
        "workers/y.py:2: ALLTICK_URL",
    ]


def test_every_vendor_is_registered_and_implements_the_provider_protocol() -> None:
    from feedmux.providers import VENDORS, provider  # noqa: PLC0415 (not on main: the seam)
    from feedmux.providers.base import Provider  # noqa: PLC0415

    assert sorted(VENDORS) == _vendors()  # every vendor package is registered, and only those
    for name in VENDORS:
        vendor = provider(name)
        assert vendor.name == name
        for attr in Provider.__annotations__:
            assert hasattr(vendor, attr), f"{name} lacks {attr}"
        methods = [n for n, v in vars(Provider).items() if callable(v) and n[0] != "_"]
        assert "split" in methods and "decode" in methods
        for method in methods:
            assert callable(getattr(vendor, method, None)), f"{name} lacks {method}()"
