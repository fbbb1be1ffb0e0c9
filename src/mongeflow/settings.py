"""Settings: immutable values whose fields carry their own default and help text.

Schemes, their inner solvers and metrics, and divergences are :class:`Settings`: frozen
Equinox modules whose fields are declared with :func:`setting`. That declaration is the
single source of truth for a setting's name, default, type and help; the command line, the
records saved with a run and ``repr`` are all derived from it:

- :func:`flat` lists a value's settings as flat ``key -> value`` pairs (nested values such
  as an inner solver become a choice plus their own, prefixed, settings: ``inner_steps``);
- :func:`configure` builds a value from a default value and flat settings;
- :func:`record` and :func:`from_record` turn a value into JSON and back;
- :func:`options` lists the command-line options of a registry of default values.

A setting's flat key is its field name, unless its declaration names it (``flag=``): a
field whose plain name would collide with another value's setting in the one flat
namespace keeps its plain name in Python (``Sinkhorn(threshold=1e-3)``) and its own key
(``sinkhorn_threshold``, the flag ``--sinkhorn-threshold``).

A number setting declares the numbers it accepts (its :class:`Range`); :func:`configure`,
through which every named setting passes (``get_scheme``, ``get_divergence``, saved
records, the command line), refuses any other value with a :class:`SettingError` that
names the setting's key (``tau must be in (0, 100], got 0``) and carries its flag, for the
command line to show. A constructor called directly refuses only NaN and ±inf.

A list setting (``listed``) is a tuple of floats, such as the drift's temperatures; it is
also accepted as a list or as a string of numbers separated by commas or spaces
(``"0.5,1,2"``, the command line's form and the form older run records hold).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np

_MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: from ``low`` to ``high`` (``None``: unbounded), each
    end included unless ``low_open`` / ``high_open``. A float must also be finite, an int a
    whole number. With ``listed`` the setting is a tuple of such numbers (given also as a
    list, or as a string of them separated by commas or spaces, such as ``"0.5,1,2"``).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    listed: bool = False

    def __str__(self) -> str:  # "(0, 100]", "[1, inf)"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else _show(self.low)
        high = "inf" if self.high is None else _show(self.high)
        return f"{left}{low}, {high}{right}"

    def expected(self, kind: str) -> str:
        """What the range asks for, as the end of ``name must be …``."""
        if kind == "int" and self.high is None and self.low is not None and not self.low_open:
            return f"≥ {_show(self.low)}"
        return f"in {self}"

    def contains(self, x: float) -> bool:
        """Whether the number ``x`` (finite) lies in the range."""
        if not math.isfinite(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)


def _show(x) -> str:
    """A number as a message shows it: ``0``, ``1e+09``, ``nan`` (``repr`` when ``:g``
    would round it); anything else by ``repr``."""
    if isinstance(x, bool) or not isinstance(x, int | float | np.number):
        return repr(x)
    if isinstance(x, int | np.integer):
        return str(int(x))
    short = f"{float(x):g}"
    return short if not math.isfinite(x) or float(short) == float(x) else repr(float(x))


def floats(values: Any) -> tuple[float, ...]:
    """The numbers of a list setting, given as numbers or as a string ``"0.5, 1, 2"``.

    Raises:
        ValueError: an entry that is not a number.
    """
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"expected numbers such as '0.5,1,2', got {values!r}") from None


class SettingError(ValueError):
    """A setting given a value it does not accept.

    The message names the setting by its flat key, as a Python caller gives it
    (``tau must be in (0, 100], got 0``); :meth:`on_command_line` names its flag instead.

    Attributes:
        key: the setting's flat key (``tau``, ``inner_steps``, ``sinkhorn_threshold``).
        flag: its command-line flag, without the dashes (``sinkhorn-threshold``).
        expected: what it must be and what came (``in (0, 100], got 0``).
    """

    def __init__(self, key: str, flag: str, expected: str):
        super().__init__(f"{key} must be {expected}")
        self.key, self.flag, self.expected = key, flag, expected

    def __reduce__(self):
        return type(self), (self.key, self.flag, self.expected)

    def on_command_line(self) -> str:
        """The message with the setting named by its flag: ``--tau must be …``."""
        return f"--{self.flag} must be {self.expected}"


def fault(value: Any, kind: str, allowed: Range | None) -> str | None:
    """What is wrong with ``value`` for a setting of ``kind`` (``int``, ``float``, ...)
    whose numbers lie in ``allowed``: ``None`` when nothing is (a traced number too: it is
    known only at run time), else what was expected and what came, ``"in (0, 100], got 0"``.
    A float must be finite even where no range is declared.
    """
    if allowed is not None and allowed.listed:
        return _list_fault(value, allowed)
    if kind not in ("int", "float") or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, bool | np.bool_ | str | bytes) or np.ndim(value) != 0:
        return f"a number, got {_show(value)}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return f"a number, got {_show(value)}"
    shown = _show(value if isinstance(value, int | float | np.number) else x)
    expected = "a finite number" if allowed is None else allowed.expected(kind)
    if kind == "int" and not (math.isfinite(x) and x.is_integer()):
        return f"a whole number{'' if allowed is None else ' ' + expected}, got {shown}"
    if math.isfinite(x) and (allowed is None or allowed.contains(x)):
        return None
    return f"{expected}, got {shown}"


def _list_fault(value: Any, allowed: Range) -> str | None:
    try:
        entries = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    except TypeError:  # one number
        entries = [value]
    expected = f"numbers {allowed.expected('float')}, separated by commas (such as '0.5,1,2')"
    if not entries:
        return f"{expected}, got no number in {value!r}"
    for entry in entries:
        try:
            ok = allowed.contains(float(entry))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            shown = entry if isinstance(entry, str) else _show(entry)
            return f"{expected}, got {shown!r} in {value!r}"
    return None


def setting(
    default: Any = _MISSING,
    *,
    help: str,
    static: bool = False,
    choices: Mapping[str, Any] | tuple[str, ...] | None = None,
    default_factory: Any = _MISSING,
    flatten: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    listed: bool = False,
    flag: str | None = None,
):
    """Declare a field of a :class:`Settings` value.

    Args:
        default: the default value (or ``default_factory`` for a nested value).
        help: one line for ``--help`` and the documentation.
        static: a Python-level setting (a loop length, a branch), not a traced number.
        choices: the allowed strings, or for a nested value a registry ``name -> default
            value`` of its alternatives.
        flatten: for a nested value: its settings keep their own names (no prefix).
        low, high, low_open, high_open, listed: the numbers the setting accepts (a
            :class:`Range`, checked by :func:`configure` and shown by ``--help``); with
            ``listed`` the setting is a tuple of such numbers.
        flag: the setting's flat key, words joined by ``-`` (the key and the command-line
            flag; default: the field's name): for a field whose plain name would collide
            with another value's in the one flat namespace of settings, such as the
            Sinkhorn divergence's ``threshold`` (``flag="sinkhorn-threshold"``).
    """
    metadata = {"help": help, "choices": choices, "flatten": flatten}
    if flag is not None:
        metadata["flag"] = flag
    if low is not None or high is not None or listed:
        metadata["range"] = Range(low, high, low_open, high_open, listed)
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

    def __check_init__(self):
        # a number is checked against its range by `configure`; NaN and ±inf are never valid
        for f in _fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float | np.floating) and not math.isfinite(v):
                raise ValueError(
                    f"{type(self).__name__}: {f.name} must be a finite number, got {_show(v)}"
                )

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in _fields(self))
        return f"{type(self).__name__}({inner})"


def _fields(value) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(value) if "help" in f.metadata]


def _is_settings(value) -> bool:
    return isinstance(value, Settings)


def _key(f: dataclasses.Field, prefix: str) -> str:
    """The flat key of the field ``f`` of a value whose settings are prefixed by ``prefix``."""
    return prefix + f.metadata.get("flag", f.name).replace("-", "_")


@dataclasses.dataclass
class Option:
    """One command-line option derived from the settings of a registry's values.

    Attributes:
        flag: ``--name`` without the dashes, words joined by ``-``.
        dest: the flat settings key (words joined by ``_``).
        kind: ``bool``, ``int``, ``float``, ``str``, ``floats`` (a list setting: a tuple of
            floats) or ``choice`` (a nested value's name).
        help: the field's help text.
        defaults: ``owner name -> default`` for every registered value that has it.
        choices: the allowed strings, if any.
        ranges: the numbers accepted (:class:`Range`) -> the names of the values that
            declare them (one range, unless values differ: ``[0, inf)`` for one metric's
            damping, ``(0, inf)`` for another's).
    """

    flag: str
    dest: str
    kind: str
    help: str
    defaults: dict[str, Any]
    choices: tuple[str, ...] | None = None
    ranges: dict[Range, list[str]] = dataclasses.field(default_factory=dict)

    def expected(self) -> str:
        """The ranges, as ``--help`` shows them: ``in (0, 100]``, ``≥ 1``, or one per value."""
        if len(self.ranges) == 1:
            return _expected(next(iter(self.ranges)), self.kind)
        return ", ".join(
            f"{_expected(r, self.kind)} for {', '.join(names)}" for r, names in self.ranges.items()
        )

    def check(self, value: Any) -> None:
        """Refuse a ``value`` that no registered value accepts (:func:`configure` then checks
        it against the value chosen).

        Raises:
            SettingError: ``tau must be in (0, 100], got 0`` (its flag: ``--tau must be …``).
        """
        wrong = [fault(value, self.kind, r) for r in list(self.ranges) or [None]]
        if all(wrong):
            text = wrong[0] if len(wrong) == 1 else f"{self.expected()}, got {_show(value)}"
            raise SettingError(self.dest, self.flag, text)

    def parse(self, value: Any) -> Any:
        """``value`` in the setting's own type where it is given in another form: a list
        setting given as a string (``"0.5,1,2"``: the command line, an older run record) or
        a list (a JSON record) becomes a tuple of floats; anything else, or a value that is
        not a list of numbers (for :meth:`check` to refuse), is returned as it is."""
        if self.kind != "floats" or isinstance(value, tuple):
            return value
        try:
            return floats(value)
        except ValueError:
            return value


def _expected(allowed: Range, kind: str) -> str:
    return f"each {allowed.expected('float')}" if allowed.listed else allowed.expected(kind)


def _kind(value) -> str:
    if isinstance(value, tuple):
        return "floats"
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
        dest = _key(f, prefix)
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
        option = _add(found, dest, _kind(v), f.metadata["help"], owner, v, names)
        if (allowed := f.metadata.get("range")) is not None:
            holders = option.ranges.setdefault(allowed, [])
            if value.name not in holders:
                holders.append(value.name)


def _add(found, dest, kind, help, owner, default, choices) -> Option:
    option = found.setdefault(dest, Option(dest.replace("_", "-"), dest, kind, help, {}, choices))
    if option.kind != kind and {option.kind, kind} != {"int", "float"}:
        raise TypeError(f"setting {dest!r} is a {option.kind} in one value and a {kind} in another")
    if {option.kind, kind} == {"int", "float"}:
        option.kind = "float"
    option.defaults.setdefault(owner, default)
    return option


def options(registry: Mapping[str, Settings]) -> dict[str, Option]:
    """The options of every value of ``registry`` (``name -> default value``), by ``dest``.

    An option shared by several values (``tau``) appears once, with each value's default.
    """
    found: dict[str, Option] = {}
    for name, value in registry.items():
        _walk(value, "", name, found)
    for option in found.values():
        if option.ranges:
            option.help = f"{option.help}; {option.expected()}"
    return found


def flat(value: Settings, prefix: str = "") -> dict[str, Any]:
    """The settings of ``value`` as flat ``dest -> value`` pairs (nested values by name)."""
    out: dict[str, Any] = {}
    for f in _fields(value):
        v = getattr(value, f.name)
        dest = _key(f, prefix)
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
        SettingError: an unknown choice, or a number outside its setting's :class:`Range`
            (or NaN, ±inf): ``tau must be in (0, 100], got 0``.
        ValueError: a setting that ``value`` does not have (the message lists those it has),
            or a value its class rejects.
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
        dest = _key(f, prefix)
        choices = f.metadata.get("choices")
        if _is_settings(v):
            if isinstance(choices, Mapping) and dest in remaining:
                pick = remaining.pop(dest)
                if pick not in choices:
                    raise _bad_choice(dest, choices, pick)
                if pick != v.name:
                    v = choices[pick]
            sub = prefix if f.metadata.get("flatten") else f"{dest}_"
            changes[f.name] = _configure(v, remaining, sub)
        elif dest in remaining:
            new = remaining.pop(dest)
            if choices is not None and new not in choices:
                raise _bad_choice(dest, choices, new)
            if wrong := fault(new, _kind(v), f.metadata.get("range")):
                raise SettingError(dest, dest.replace("_", "-"), wrong)
            if _kind(v) == "int" and isinstance(new, float):
                new = int(new)  # a whole number (checked above): a loop length, a size
            elif _kind(v) == "floats":
                new = floats(new)  # numbers (checked above), given as a string or a list
            changes[f.name] = new
    return dataclasses.replace(value, **changes) if changes else value


def _bad_choice(key: str, choices, got) -> SettingError:
    return SettingError(key, key.replace("_", "-"), f"one of {', '.join(choices)}, got {got!r}")


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
    """A JSON-able description of ``value``: its name and its flat settings (a list
    setting as a list of numbers)."""
    return {"name": value.name, "settings": {k: _plain(v) for k, v in flat(value).items()}}


def from_record(entry: Mapping[str, Any], registry: Mapping[str, Settings]) -> Settings:
    """Rebuild a value saved by :func:`record` from ``registry`` (``name -> default``)."""
    name = entry["name"]
    if name not in registry:
        raise ValueError(f"unknown name {name!r}; valid names: {', '.join(registry)}")
    return configure(registry[name], entry.get("settings", {}), name)


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "size", 2) == 1:
        return v.item()
    return v


def same(saved: Any, now: Any) -> bool:
    """Whether two recorded values of one setting are the same: equal, or the same numbers
    where one is a list setting's string form (``"0.5,1,2"``, as older records hold it) or
    a list and the other a list or tuple of numbers."""
    if saved == now:
        return True
    if isinstance(saved, str | list | tuple) and isinstance(now, str | list | tuple):
        if isinstance(saved, str) and isinstance(now, str):
            return False
        try:
            return floats(saved) == floats(now)
        except ValueError:
            return False
    return False
