"""Settings: immutable values whose fields carry their own default and help text.

Schemes, their inner solvers and metrics, and divergences are :class:`Settings`: frozen
Equinox modules whose fields are declared with :func:`setting`. That declaration is the
single source of truth for a setting's name, default, type and help; the command line, the
records saved with a run and ``repr`` are all derived from it:

- :func:`options` lists the flags of a registry of default values (nested values such as an
  inner solver become a choice flag plus their own, prefixed, settings);
- :func:`configure` builds a value from a default value and flat settings;
- :func:`record` and :func:`from_record` turn a value into JSON and back.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import equinox as eqx

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    help: str,
    static: bool = False,
    choices: Mapping[str, Any] | tuple[str, ...] | None = None,
    default_factory: Any = _MISSING,
    flatten: bool = False,
):
    """Declare a field of a :class:`Settings` value.

    Args:
        default: the default value (or ``default_factory`` for a nested value).
        help: one line for ``--help`` and the documentation.
        static: a Python-level setting (a loop length, a branch), not a traced number.
        choices: the allowed strings, or for a nested value a registry ``name -> default
            value`` of its alternatives.
        flatten: for a nested value: its settings keep their own names (no prefix).
    """
    metadata = {"help": help, "choices": choices, "flatten": flatten}
    if static:
        metadata["static"] = True
    kwargs = {"metadata": metadata}
    if default is not _MISSING:
        kwargs["default"] = default
    if default_factory is not _MISSING:
        kwargs["default_factory"] = default_factory
    return dataclasses.field(**kwargs)


class Settings(eqx.Module):
    """A value made of settings; ``name`` is its registry (command-line) name."""

    name: ClassVar[str] = ""

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in _fields(self))
        return f"{type(self).__name__}({inner})"


def _fields(value) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(value) if "help" in f.metadata]


def _is_settings(value) -> bool:
    return isinstance(value, Settings)


@dataclasses.dataclass
class Option:
    """One command-line option derived from the settings of a registry's values.

    Attributes:
        flag: ``--name`` without the dashes, words joined by ``-``.
        dest: the flat settings key (words joined by ``_``).
        kind: ``bool``, ``int``, ``float``, ``str`` or ``choice`` (a nested value's name).
        help: the field's help text.
        defaults: ``owner name -> default`` for every registered value that has it.
        choices: the allowed strings, if any.
    """

    flag: str
    dest: str
    kind: str
    help: str
    defaults: dict[str, Any]
    choices: tuple[str, ...] | None = None


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _walk(value, prefix: str, owner: str, found: dict[str, Option]) -> None:
    for f in _fields(value):
        v = getattr(value, f.name)
        dest = f"{prefix}{f.name}"
        choices = f.metadata.get("choices")
        if _is_settings(v):
            if isinstance(choices, Mapping):
                _add(found, dest, "choice", f.metadata["help"], owner, v.name, tuple(choices))
                # the owner's own nested value first: its defaults are the ones shown
                alternatives = [v] + [a for a in choices.values() if type(a) is not type(v)]
            else:
                alternatives = [v]
            sub = prefix if f.metadata.get("flatten") else f"{dest}_"
            for alt in alternatives:
                _walk(alt, sub, owner, found)
            continue
        names = tuple(choices) if choices is not None else None
        _add(found, dest, _kind(v), f.metadata["help"], owner, v, names)


def _add(found, dest, kind, help, owner, default, choices) -> None:
    option = found.setdefault(dest, Option(dest.replace("_", "-"), dest, kind, help, {}, choices))
    if option.kind != kind and {option.kind, kind} != {"int", "float"}:
        raise TypeError(f"setting {dest!r} is a {option.kind} in one value and a {kind} in another")
    if {option.kind, kind} == {"int", "float"}:
        option.kind = "float"
    option.defaults.setdefault(owner, default)


def options(registry: Mapping[str, Settings]) -> dict[str, Option]:
    """The options of every value of ``registry`` (``name -> default value``), by ``dest``.

    An option shared by several values (``tau``) appears once, with each value's default.
    """
    found: dict[str, Option] = {}
    for name, value in registry.items():
        _walk(value, "", name, found)
    return found


def flat(value: Settings, prefix: str = "") -> dict[str, Any]:
    """The settings of ``value`` as flat ``dest -> value`` pairs (nested values by name)."""
    out: dict[str, Any] = {}
    for f in _fields(value):
        v = getattr(value, f.name)
        dest = f"{prefix}{f.name}"
        if _is_settings(v):
            if isinstance(f.metadata.get("choices"), Mapping):
                out[dest] = v.name
            out.update(flat(v, prefix if f.metadata.get("flatten") else f"{dest}_"))
        else:
            out[dest] = v
    return out


def configure(value: Settings, settings: Mapping[str, Any], what: str = "") -> Settings:
    """``value`` with the flat ``settings`` applied (see :func:`flat`).

    Raises:
        ValueError: a setting that ``value`` does not have (the message lists those it has),
            an unknown choice, or a value its class rejects.
    """
    remaining = dict(settings)
    result = _configure(value, remaining, "")
    if remaining:
        known = ", ".join(sorted(flat(result)))
        bad = ", ".join(sorted(remaining))
        raise ValueError(
            f"{what or type(value).__name__} has no setting {bad}; its settings: {known}"
        )
    return result


def _configure(value: Settings, remaining: dict, prefix: str) -> Settings:
    changes = {}
    for f in _fields(value):
        v = getattr(value, f.name)
        dest = f"{prefix}{f.name}"
        choices = f.metadata.get("choices")
        if _is_settings(v):
            if isinstance(choices, Mapping) and dest in remaining:
                pick = remaining.pop(dest)
                if pick not in choices:
                    raise ValueError(f"{dest} must be one of {', '.join(choices)}, got {pick!r}")
                if pick != v.name:
                    v = choices[pick]
            sub = prefix if f.metadata.get("flatten") else f"{dest}_"
            changes[f.name] = _configure(v, remaining, sub)
        elif dest in remaining:
            new = remaining.pop(dest)
            if choices is not None and new not in choices:
                raise ValueError(f"{dest} must be one of {', '.join(choices)}, got {new!r}")
            changes[f.name] = new
    return dataclasses.replace(value, **changes) if changes else value


def closest(word: str, names: Iterable[str]) -> list[str]:
    """The names closest to ``word`` (:func:`difflib.get_close_matches`): the closest, and
    the runner-up only when it is nearly as close; ``[]`` when none is close."""
    names = [str(n) for n in names]
    close = difflib.get_close_matches(str(word), names, n=2, cutoff=0.6)
    ratio = lambda name: difflib.SequenceMatcher(None, str(word), name).ratio()
    return [c for c in close if ratio(c) >= ratio(close[0]) - 0.05]


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) for the names :func:`closest` to
    ``word``, or ``""``. For messages that name an unknown value."""
    close = closest(word, names)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def unknown(kind: str, name: str, registry: Iterable[str]) -> str:
    """``unknown KIND 'name'; valid KINDs: a, b, c`` and the closest names, if any."""
    names = list(registry)
    hint = did_you_mean(name, names)
    return f"unknown {kind} {name!r}; valid {kind}s: {', '.join(names)}{hint}"


def lookup(registry: Mapping[str, Settings], name: str, settings: Mapping[str, Any], kind: str):
    """The value registered as ``name`` in ``registry``, with flat ``settings`` applied.

    Raises:
        ValueError: an unknown name (the message lists the valid ones, and the closest),
            or a bad setting.
    """
    if name not in registry:
        raise ValueError(unknown(kind, name, registry))
    return configure(registry[name], settings, f"{kind} {name!r}")


def record(value: Settings) -> dict[str, Any]:
    """A JSON-able description of ``value``: its name and its flat settings."""
    return {"name": value.name, "settings": {k: _plain(v) for k, v in flat(value).items()}}


def from_record(entry: Mapping[str, Any], registry: Mapping[str, Settings]) -> Settings:
    """Rebuild a value saved by :func:`record` from ``registry`` (``name -> default``)."""
    name = entry["name"]
    if name not in registry:
        raise ValueError(f"unknown name {name!r}; valid names: {', '.join(registry)}")
    return configure(registry[name], entry.get("settings", {}), name)


def _plain(v):
    if hasattr(v, "item") and getattr(v, "size", 2) == 1:
        return v.item()
    return v
