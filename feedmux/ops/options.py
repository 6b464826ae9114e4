"""Option values in layers: defaults < TOML file (--config) < FEEDMUX_* environment < flags.

An option is declared once, as an ``Option`` in a table: its name is at the same time the
flag (``--max-codes-per-conn``), the file key (``max-codes-per-conn`` or
``max_codes_per_conn``) and the variable (``FEEDMUX_MAX_CODES_PER_CONN``); its default is
the default of the Settings field it sets. The argparse parser is built from the table with
argparse's public API, every default left out (``argparse.SUPPRESS``) so that "given on the
command line" is knowable, and the layers are merged over the same table. Bounds are declared
on the Settings fields (``msgspec.Meta``); ``check_fields`` reports a value outside them
naming the flag, key or variable it came from.
"""

from __future__ import annotations

import argparse
import copy
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
import tomli_w

from feedmux import passwords
from feedmux.errors import ConfigError

ENV_PREFIX = "FEEDMUX_"
CONFIG_ENV = "FEEDMUX_CONFIG"
# FEEDMUX_* variables that are not options (the tests' switches; the config file's path).
NOT_OPTIONS = frozenset({CONFIG_ENV, "FEEDMUX_REQUIRE_SERVICES", "FEEDMUX_TEST_TIME_SCALE",
                         "FEEDMUX_SLOW_TESTS", "FEEDMUX_WEB_TOKEN"})  # fmt: skip
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})
Source = Literal["default", "file", "env", "flag"]


@dataclass(frozen=True)
class Option:
    """One option of a command, in every layer.

    ``kind``: ``value`` takes one value, ``switch`` is a flag without a value (true when
    given), ``list`` is repeatable (space-separated in a variable, a list in the file).
    ``field`` names the Settings field the value goes to unchanged (its bounds apply, and
    messages about it name this option); ``aliases`` are old names that still work, with a
    warning."""

    name: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] | None = None  # text to value, checked (str when None)
    kind: Literal["value", "switch", "list"] = "value"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    field: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return _dest(self.name)

    @property
    def flag(self) -> str:
        return f"--{self.name}"


@dataclass(frozen=True)
class Section:
    """Options shown together in ``--help`` (an argument group); ``title`` "" for none."""

    title: str
    description: str
    options: tuple[Option, ...]


def _dest(name: str) -> str:
    return name.replace("-", "_")


def default_of(struct: type[msgspec.Struct], name: str) -> Any:
    """The default of a Struct field (None if it has none): the one place it is written."""
    info = _field(struct, name)
    if info.default is not msgspec.NODEFAULT:
        return copy.copy(info.default)  # a list or dict default is not shared
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return None


def _field(struct: type[msgspec.Struct], name: str) -> msgspec.structs.FieldInfo:
    for info in msgspec.structs.fields(struct):
        if info.name == name:
            return info
    raise KeyError(f"{struct.__name__} has no field {name!r}")


def _metas(kind: Any) -> list[msgspec.Meta]:
    """The Meta annotations of a field's type, of ``Annotated[...] | None`` too."""
    if get_origin(kind) is Annotated:
        return [m for m in get_args(kind)[1:] if isinstance(m, msgspec.Meta)]
    return [m for arg in get_args(kind) for m in _metas(arg)]  # a union


def _plain(kind: Any) -> Any:
    """``Annotated[int, ...] | None`` → ``int``."""
    if get_origin(kind) is Annotated:
        return _plain(get_args(kind)[0])
    parts = [a for a in get_args(kind) if a is not type(None)]
    if type(None) in get_args(kind) and len(parts) == 1:
        return _plain(parts[0])
    return kind


def option_name(struct: type[msgspec.Struct], name: str) -> str:
    """The option that sets field ``name``: the field's name with dashes, or the one its
    ``Meta(extra={"option": ...})`` declares (``depth_levels`` is set by ``--depth``)."""
    for meta in _metas(_field(struct, name).type):
        if meta.extra and "option" in meta.extra:
            return str(meta.extra["option"])
    return name.replace("_", "-")


def setting(struct: type[msgspec.Struct], field: str, help: str, **kw: Any) -> Option:
    """The option that sets ``struct``'s field ``field`` unchanged: its name, default, kind
    and choices come from the field (``kw`` may give its own, e.g. a ``parse``)."""
    info = _field(struct, field)
    plain = _plain(info.type)
    derived: dict[str, Any] = {"parse": {int: int, float: float}.get(plain)}
    if plain is bool:
        derived = {"kind": "switch"}
    elif get_origin(plain) is list:
        derived = {"kind": "list"}
    elif get_origin(plain) is Literal and "parse" not in kw:
        derived["choices"] = tuple(get_args(plain))
    given = {"name": option_name(struct, field), "help": help,
             "default": default_of(struct, field), "field": field, **derived, **kw}  # fmt: skip
    return Option(**given)


def add_options(parser: argparse.ArgumentParser, sections: Iterable[Section]) -> None:
    """Add each option (and its aliases, hidden) to ``parser``, in argument groups."""
    for section in sections:
        group = (parser.add_argument_group(section.title, section.description)
                 if section.title else parser)  # fmt: skip
        for option in section.options:
            names = [option.name, *option.aliases]
            for name in names:
                shown = option.help if name == option.name else argparse.SUPPRESS
                kwargs: dict[str, Any] = {"dest": _dest(name), "default": argparse.SUPPRESS,
                                          "help": _help(option, shown)}  # fmt: skip
                if option.kind == "switch":
                    group.add_argument(f"--{name}", action="store_true", **kwargs)
                    continue
                if option.kind == "list":
                    kwargs["action"] = "append"
                if option.parse is not None:
                    kwargs["type"] = option.parse
                group.add_argument(f"--{name}", choices=option.choices, metavar=option.metavar,
                                   **kwargs)  # fmt: skip


def _help(option: Option, text: str) -> str:
    """The help with ``{default}`` filled in, so it shows the one default there is."""
    if text == argparse.SUPPRESS or "{default}" not in text:
        return text
    default = option.default
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return text.replace("{default}", str(default)).replace("%", "%%")


@dataclass(frozen=True)
class Resolved:
    """Each option's value, where it came from (default, file, env or flag) and, for a
    message about it, the name it was given there."""

    values: dict[str, Any]
    sources: dict[str, Source]
    names: dict[str, str]  # dest -> "--shards", "FEEDMUX_SHARDS", "f.toml: key 'shards'"
    warnings: list[str] = field(default_factory=list)


def _convert(option: Option, value: Any, where: str) -> Any:
    """A file or environment value, converted and checked as the flag would be."""
    try:
        if option.kind == "switch":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in TRUE | FALSE:
                return value.lower() in TRUE
            raise ValueError("expected true or false")
        if option.kind == "list":
            items = value.split() if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ValueError("expected a list")
            return [_scalar(option, item) for item in items]
        return _scalar(option, value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


_KIND_NAMES: dict[Callable[[str], Any], str] = {int: "an integer", float: "a number"}


def _scalar(option: Option, value: Any) -> Any:
    parse = option.parse
    what = _KIND_NAMES.get(parse, "a string") if parse is not None else "a string"
    if isinstance(value, bool | list | dict):
        raise ValueError(f"expected {what}, got {value!r}")
    if parse is float and isinstance(value, int | float):
        value = float(value)
    elif parse is int and isinstance(value, int):
        pass
    elif parse is not None:
        try:
            value = parse(str(value))
        except ValueError:
            if parse in _KIND_NAMES:
                raise ValueError(f"expected {what}, got {value!r}") from None
            raise
    elif not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise ValueError(f"must be one of {', '.join(option.choices)}, got {value!r}")
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


class _Table:
    """Options by dest, their aliases' dests mapped to them."""

    def __init__(self, sections: Iterable[Section]) -> None:
        self.options = {o.dest: o for s in sections for o in s.options}
        self.aliases = {_dest(a): o for o in self.options.values() for a in o.aliases}

    def find(self, dest: str) -> tuple[Option | None, bool]:
        """The option named ``dest`` and whether that is a deprecated alias of it."""
        if dest in self.options:
            return self.options[dest], False
        return self.aliases.get(dest), dest in self.aliases


def resolve(
    sections: Iterable[Section],
    given: Mapping[str, Any],
    env: Mapping[str, str],
    file_data: Mapping[str, Any] | None = None,
    file_name: str = "config file",
    *,
    exclusive: Iterable[frozenset[str]] = (),
) -> Resolved:
    """Merge the layers over the options' defaults. An unknown file key is an error; an
    unknown FEEDMUX_* variable a warning (it may be meant for something else); an old name a
    warning saying the new one.

    ``given`` holds only the flags given (the parser built by ``add_options`` leaves out the
    others). Of an ``exclusive`` group of options, a layer that sets one replaces the others
    set below it (``--codes`` on the command line replaces a file's ``symbols_file``)."""
    table = _Table(sections)
    warnings: list[str] = []

    def layer(items: Iterable[tuple[str, Any]], source: Source, spell: Callable[[str], str],
              short: Callable[[str], str]) -> dict[str, tuple[Any, str]]:  # fmt: skip
        """``spell(name)`` names a value for a message, ``short(name)`` the new name."""
        out: dict[str, tuple[Any, str]] = {}
        for name, text in items:
            option, old = table.find(_dest(name))
            if option is None:
                continue  # the callers below decided what an unknown name is
            where = spell(name)
            if old:
                warnings.append(f"warning: {where} is deprecated; use {short(option.name)}")
            value = text if source == "flag" else _convert(option, text, where)
            if old and option.dest in out:
                continue  # both spellings in one layer: the current name wins
            out[option.dest] = (value, spell(option.name) if old else where)
        return out

    from_file: list[tuple[str, Any]] = []
    for key, value in (file_data or {}).items():
        if table.find(_dest(key))[0] is None:
            raise ConfigError(f"{file_name}: unknown key {key!r} (keys are `feedmux run` "
                              "flags without the dashes; see `feedmux config show`)")  # fmt: skip
        from_file.append((key, value))
    from_env: list[tuple[str, Any]] = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_OPTIONS:
            continue
        dest = name[len(ENV_PREFIX) :].lower()
        if table.find(dest)[0] is None:
            warnings.append(f"warning: {name} is not a feedmux option; ignored (options are "
                            f"{ENV_PREFIX}<FLAG NAME>, e.g. FEEDMUX_SHARDS)")  # fmt: skip
            continue
        from_env.append((dest, value))

    def variable(name: str) -> str:
        return ENV_PREFIX + _dest(name).upper()

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    layers: list[tuple[Source, dict[str, tuple[Any, str]]]] = [
        ("file", layer(from_file, "file", lambda key: f"{file_name}: key {key!r}", repr)),
        ("env", layer(from_env, "env", lambda name: f"environment variable {variable(name)}",
                      variable)),
        ("flag", layer(given.items(), "flag", flag, flag)),
    ]  # fmt: skip
    defaults = {dest: option.default for dest, option in table.options.items()}
    values = dict(defaults)
    sources: dict[str, Source] = dict.fromkeys(table.options, "default")
    names = {dest: option.flag for dest, option in table.options.items()}
    for source, found in layers:
        for group in exclusive:
            if group & found.keys():  # e.g. --codes on the command line replaces a file's list
                for dest in group - found.keys():
                    values[dest], sources[dest] = defaults[dest], "default"
                    names[dest] = table.options[dest].flag
        for dest, (value, where) in found.items():
            values[dest], sources[dest], names[dest] = value, source, where
    return Resolved(values, sources, names, warnings)


def config_path(given: str | None, env: Mapping[str, str]) -> Path | None:
    path = given or env.get(CONFIG_ENV)
    return Path(path) if path else None


def check_fields(
    struct: msgspec.Struct, where: Callable[[str], str], shown: Callable[[str, Any], str]
) -> None:
    """Each field of ``struct`` against its declared type and bounds (``msgspec.Meta``): a
    ConfigError naming the first that is outside them (``where(field)``), its value shown by
    ``shown`` (which masks secrets)."""
    for info in msgspec.structs.fields(struct):
        value = getattr(struct, info.name)
        try:
            msgspec.convert(value, info.type)
        except msgspec.ValidationError as exc:
            rule = _rule(info.type) or str(exc).split(" - at ")[0].lower()
            raise ConfigError(f"{where(info.name)} {rule}, got {shown(info.name, value)}") from None


def _rule(kind: Any) -> str | None:
    """What a field's annotation demands, in words: ``must be between 1 and 256``."""
    if get_origin(kind) is Literal:
        return "must be one of " + ", ".join(map(str, get_args(kind)))
    metas = [m for m in _metas(kind) if m.description or m.ge is not None or m.le is not None
             or m.gt is not None]  # fmt: skip
    if not metas:
        inner = [_rule(a) for a in get_args(kind) if a is not type(None)]  # X | None
        return next((r for r in inner if r), None)
    meta = metas[0]
    if meta.description:
        return f"must be {meta.description}"
    if meta.ge is not None and meta.le is not None:
        return f"must be between {meta.ge} and {meta.le}"
    if meta.ge is not None:
        return f"must be >= {meta.ge}"
    if meta.gt is not None:
        return f"must be > {meta.gt}"
    if meta.le is not None:
        return f"must be <= {meta.le}"
    return None


def to_toml(resolved: Resolved, secret: tuple[str, ...] = ()) -> str:
    """The values as a config file (secrets masked), each line saying where it came from."""
    lines = []
    for dest, value in resolved.values.items():
        source = resolved.sources[dest]
        if value is None or (source == "default" and value in ("", [], {})):
            lines.append(f"# {dest} = (not set)")
            continue
        shown = "***" if dest in secret and value else mask_passwords(value)
        text = f"{dest} = {_toml_value(shown)}"
        lines.append(f"{text:<60} # {source}" if source != "default" else text)
    return "\n".join(lines) + "\n"


def mask_passwords(value: Any) -> Any:
    """``postgresql://user:secret@host`` → ``postgresql://user:***@host``, in lists too."""
    if isinstance(value, list):
        return [mask_passwords(v) for v in value]
    return passwords.mask_passwords(value) if isinstance(value, str) else value


def _toml_value(value: Any) -> str:
    """One value in TOML, a list on one line (tomli-w would spread it over several)."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]
