"""Option values in layers: defaults < TOML file (--config) < FEEDMUX_* environment < flags.

Every layer speaks the flags' language: a TOML key or an environment variable is a flag's
name (``max-codes-per-conn``, ``max_codes_per_conn``, ``FEEDMUX_MAX_CODES_PER_CONN``) and its
value is converted and checked as the flag would be. No argparse action is parsed twice: the
flags are parsed with every default suppressed, so "given on the command line" is knowable.
"""

from __future__ import annotations

import argparse
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from feedmux.errors import ConfigError

ENV_PREFIX = "FEEDMUX_"
CONFIG_ENV = "FEEDMUX_CONFIG"
# FEEDMUX_* variables that are not options (CI's switch; the config file's path).
NOT_OPTIONS = frozenset({CONFIG_ENV, "FEEDMUX_REQUIRE_SERVICES", "FEEDMUX_TEST_TIME_SCALE"})
# Options of which a higher layer replaces the whole group, not just its own key.
EXCLUSIVE = (frozenset({"codes", "symbols_file"}),)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Resolved:
    """Each option's value and where it came from: default, file, env or flag."""

    values: dict[str, Any]
    sources: dict[str, str]
    warnings: list[str]

    def namespace(self, **extra: Any) -> argparse.Namespace:
        return argparse.Namespace(**self.values, **extra)


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        a.dest: a
        for a in parser._actions  # argparse has no public list of a parser's options
        if a.option_strings and a.dest not in ("help", "config")
    }


def suppress_defaults(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` leave out the options not given (``resolve`` supplies the defaults)."""
    for action in _actions(parser).values():
        action.default = argparse.SUPPRESS


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    """A file or environment value, converted and checked as the flag would be."""
    try:
        if isinstance(action, argparse._StoreTrueAction):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in TRUE | FALSE:
                return value.lower() in TRUE
            raise ValueError("expected true or false")
        if isinstance(action, argparse._AppendAction):
            items = value.split() if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ValueError("expected a list")
            return [_scalar(action, item) for item in items]
        return _scalar(action, value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _scalar(action: argparse.Action, value: Any) -> Any:
    kind = action.type
    if isinstance(value, bool | list | dict):
        raise ValueError(f"expected {getattr(kind, '__name__', 'a string')}, got {value!r}")
    if kind is float and isinstance(value, int | float):
        value = float(value)
    elif kind is int and isinstance(value, int):
        pass
    elif callable(kind):
        value = kind(str(value))
    elif not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return value


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: no such file: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    return data


def token_file_warning(path: Path, data: Mapping[str, Any]) -> str | None:
    """A warning when a config file holding the token is readable by other users."""
    if "token" not in data:
        return None
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (f"warning: {path} holds the token and other users can read it; "
                f"chmod 600 {path}")  # fmt: skip
    return None


def resolve(
    parser: argparse.ArgumentParser,
    given: argparse.Namespace,
    env: Mapping[str, str],
    file_data: Mapping[str, Any] | None = None,
    file_name: str = "config file",
) -> Resolved:
    """Merge the layers over ``parser``'s defaults. An unknown file key is an error; an unknown
    FEEDMUX_* variable a warning (it may be meant for something else).

    ``given`` holds only the flags given (parsed with ``suppress_defaults``)."""
    actions = _actions(parser)
    defaults = {dest: action.default for dest, action in actions.items()}
    layers: list[tuple[str, dict[str, Any]]] = []
    from_file: dict[str, Any] = {}
    for key, value in (file_data or {}).items():
        dest = key.replace("-", "_")
        if dest not in actions:
            raise ConfigError(f"{file_name}: unknown key {key!r} (keys are `feedmux run` "
                              "flags without the dashes; see `feedmux config show`)")  # fmt: skip
        from_file[dest] = _convert(actions[dest], value, f"{file_name}: key {key!r}")
    layers.append(("file", from_file))
    from_env: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_OPTIONS:
            continue
        dest = name[len(ENV_PREFIX) :].lower()
        if dest not in actions:  # not an error: the variable may be meant for something else
            warnings.append(f"warning: {name} is not a feedmux option; ignored (options are "
                            f"{ENV_PREFIX}<FLAG NAME>, e.g. FEEDMUX_SHARDS)")  # fmt: skip
            continue
        from_env[dest] = _convert(actions[dest], value, f"environment variable {name}")
    layers.append(("env", from_env))
    layers.append(("flag", {k: v for k, v in vars(given).items() if k in actions}))
    values = {dest: defaults[dest] for dest in actions}
    sources = dict.fromkeys(actions, "default")
    for source, layer in layers:
        for group in EXCLUSIVE:
            if group & layer.keys():  # e.g. --codes on the command line replaces a file's list
                for dest in group - layer.keys():
                    values[dest], sources[dest] = defaults[dest], "default"
        for dest, value in layer.items():
            values[dest], sources[dest] = value, source
    return Resolved(values, sources, warnings)


def config_path(given: str | None, env: Mapping[str, str]) -> Path | None:
    path = given or env.get(CONFIG_ENV)
    return Path(path) if path else None


def to_toml(resolved: Resolved, secret: tuple[str, ...] = ()) -> str:
    """The values as a config file (secrets masked), each line saying where it came from."""
    lines = []
    for dest, value in resolved.values.items():
        source = resolved.sources[dest]
        if value is None:
            lines.append(f"# {dest} = (not set)")
            continue
        shown = "***" if dest in secret and value else _mask_passwords(value)
        text = f"{dest} = {_toml_value(shown)}"
        lines.append(f"{text:<60} # {source}" if source != "default" else text)
    return "\n".join(lines) + "\n"


def _mask_passwords(value: Any) -> Any:
    """``postgresql://user:secret@host`` → ``postgresql://user:***@host``, in lists too."""
    if isinstance(value, list):
        return [_mask_passwords(v) for v in value]
    return _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


def _toml_value(value: Any) -> str:
    """One value in TOML, a list on one line (tomli-w would spread it over several)."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]
