"""CEL device selectors in the Kubernetes DRA environment, evaluated with cel-python.

Why this module exists: the twin must select devices exactly as kube-scheduler does, so a selector
that matches (or errors) on a real cluster matches (or errors) here. Expressions are parsed and
evaluated by ``celpy`` (no hand-written expression parser); this module only supplies what the
Kubernetes environment adds on top of standard CEL (reference kubernetes-dra.md §2):

* the ``device`` variable: ``driver``, ``attributes`` and ``capacity`` as maps of maps grouped by
  domain (unqualified names go under the driver's domain; an unknown domain yields an empty map),
  ``allowMultipleAllocations``;
* the Kubernetes ``quantity`` and ``semver`` libraries (``==`` works, ``<``/``>`` do not);
* the Kubernetes string/list/regex extension functions (a practical subset, see ``_FUNCTIONS``);
* the error texts the allocator wraps (``no such key: <k>``, non-bool results).

Known gaps versus cel-go (listed in the twin's fidelity notes): optional syntax (``.?``,
``orValue``), ``cel.bind``, static type checking and cost limits are not available in cel-python.

One module on purpose: the value types, the function library, the ``device`` activation and the error
rewriting are one CEL environment (each function is registered against the types beside it). Quantity
*parsing*, which the scheduler also needs outside CEL, lives in :mod:`kubetwin.scheduler.quantity`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import total_ordering
from typing import Any

import celpy
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from kubetwin.scheduler.quantity import parse_quantity

__all__ = [
    "CelCompileError",
    "CelRuntimeError",
    "Quantity",
    "SelectorProgram",
    "Semver",
    "compile_selector",
    "device_activation",
]


class CelCompileError(Exception):
    """A selector that cel-python cannot parse; message shaped like the apiserver's
    ``compilation failed: ERROR: <input>:L:C: …``."""


class CelRuntimeError(Exception):
    """Evaluation failed (missing key, bad overload, non-bool result). The message is the bare CEL
    error (``no such key: model``); the allocator adds the ``claim …: selector #i on device …`` prefix."""


# ---------------------------------------------------------------------------------------------
# Quantity and semver values (CEL types)


class Quantity:
    """CEL ``kubernetes.Quantity``: compared only through ``compareTo``/``isGreaterThan``/``isLessThan``
    or ``==`` (Kubernetes declares no relational operators for it, so ``<`` raises no-such-overload)."""

    __slots__ = ("text", "value")

    def __init__(self, text: str) -> None:
        self.text = text
        self.value = parse_quantity(text)

    @classmethod
    def of(cls, value: Fraction, text: str | None = None) -> Quantity:
        q = cls.__new__(cls)
        q.value = value
        q.text = text if text is not None else str(value)
        return q

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            raise TypeError("no such overload")
        return self.value == other.value

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Quantity({self.text!r})"


_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@total_ordering
class Semver:
    """CEL ``kubernetes.Semver`` (semver.org 2.0.0 precedence; build metadata ignored)."""

    __slots__ = ("major", "minor", "patch", "pre", "text")

    def __init__(self, text: str, normalize: bool = False) -> None:
        src = text
        if normalize:  # semver(s, true): leading "v", missing minor/patch and leading zeros allowed
            m0 = re.match(r"^v?([0-9]+(?:\.[0-9]+){0,2})(.*)$", src)
            if m0:
                parts = [str(int(p)) for p in m0.group(1).split(".")]
                parts += ["0"] * (3 - len(parts))
                src = ".".join(parts) + m0.group(2)
        m = _SEMVER_RE.match(src)
        if not m:
            raise ValueError(f"No Major.Minor.Patch elements found in {text!r}")
        self.text = text
        self.major, self.minor, self.patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
        self.pre: tuple[str, ...] = tuple(m.group(4).split(".")) if m.group(4) else ()

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def compare(self, other: Semver) -> int:
        if self._key() != other._key():
            return -1 if self._key() < other._key() else 1
        if self.pre == other.pre:
            return 0
        if not self.pre:
            return 1
        if not other.pre:
            return -1
        for a, b in zip(self.pre, other.pre, strict=False):
            if a == b:
                continue
            if a.isdigit() and b.isdigit():
                return -1 if int(a) < int(b) else 1
            if a.isdigit():
                return -1
            if b.isdigit():
                return 1
            return -1 if a < b else 1
        return -1 if len(self.pre) < len(other.pre) else 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Semver):
            raise TypeError("no such overload")
        return self.compare(other) == 0

    def __lt__(self, other: object) -> bool:  # only for Python sorting; CEL has no `<` on semver
        raise TypeError("no such overload")

    def __hash__(self) -> int:
        return hash((self._key(), self.pre))

    def __repr__(self) -> str:
        return f"Semver({self.text!r})"


# ---------------------------------------------------------------------------------------------
# Library functions. celpy calls methods as functions with the receiver first, so one callable
# per name dispatches on the receiver's type (quantity and semver share compareTo & co.).


def _no_overload(name: str, *args: Any) -> TypeError:
    kinds = ", ".join(type(a).__name__ for a in args)
    return TypeError(f"no such overload: {name}({kinds})")


def _compare(a: Any, b: Any) -> int:
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return (a.value > b.value) - (a.value < b.value)
    if isinstance(a, Semver) and isinstance(b, Semver):
        return a.compare(b)
    raise _no_overload("compareTo", a, b)


def _quantity(s: Any) -> Quantity:
    if not isinstance(s, str):
        raise _no_overload("quantity", s)
    return Quantity(str(s))


def _is_quantity(s: Any) -> celtypes.BoolType:
    try:
        parse_quantity(str(s))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _semver(s: Any, normalize: Any = False) -> Semver:
    if not isinstance(s, str):
        raise _no_overload("semver", s)
    return Semver(str(s), bool(normalize))


def _is_semver(s: Any, normalize: Any = False) -> celtypes.BoolType:
    try:
        Semver(str(s), bool(normalize))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _q_only(name: str, fn: Callable[[Quantity], Any]) -> Callable[[Any], Any]:
    def call(a: Any) -> Any:
        if not isinstance(a, Quantity):
            raise _no_overload(name, a)
        return fn(a)

    return call


def _as_integer(q: Quantity) -> celtypes.IntType | CELEvalError:
    if q.value.denominator != 1 or not (-(2**63) <= q.value < 2**63):
        return CELEvalError("cannot convert value to integer")
    return celtypes.IntType(int(q.value))


def _add(a: Any, b: Any) -> Quantity:
    if isinstance(a, Quantity):
        if isinstance(b, Quantity):
            return Quantity.of(a.value + b.value)
        if isinstance(b, int):
            return Quantity.of(a.value + int(b))
    raise _no_overload("add", a, b)


def _sub(a: Any, b: Any) -> Quantity:
    if isinstance(a, Quantity):
        if isinstance(b, Quantity):
            return Quantity.of(a.value - b.value)
        if isinstance(b, int):
            return Quantity.of(a.value - int(b))
    raise _no_overload("sub", a, b)


def _semver_part(name: str) -> Callable[[Any], celtypes.IntType]:
    def call(v: Any) -> celtypes.IntType:
        if not isinstance(v, Semver):
            raise _no_overload(name, v)
        return celtypes.IntType(getattr(v, name))

    return call


def _str_fn(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(s: Any, *args: Any) -> Any:
        if not isinstance(s, str):
            raise _no_overload(name, s, *args)
        return fn(str(s), *args)

    return call


def _index_of(s: Any, sub: Any, start: Any = 0) -> celtypes.IntType:
    if isinstance(s, list):
        for i, v in enumerate(s):
            if v == sub:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if not isinstance(s, str):
        raise _no_overload("indexOf", s, sub)
    if int(start) < 0 or int(start) > len(s):
        raise IndexError(f"index out of range: {int(start)}")
    return celtypes.IntType(str(s).find(str(sub), int(start)))


def _last_index_of(s: Any, sub: Any) -> celtypes.IntType:
    if isinstance(s, list):
        for i in range(len(s) - 1, -1, -1):
            if s[i] == sub:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if not isinstance(s, str):
        raise _no_overload("lastIndexOf", s, sub)
    return celtypes.IntType(str(s).rfind(str(sub)))


def _substring(s: str, start: Any, end: Any = None) -> celtypes.StringType:
    b = int(start)
    e = len(s) if end is None else int(end)
    if b < 0 or e > len(s) or b > e:
        raise IndexError(f"index out of range: {b}")
    return celtypes.StringType(s[b:e])


def _split(s: str, sep: Any, limit: Any = -1) -> celtypes.ListType:
    n = int(limit)
    if n == 0:
        return celtypes.ListType([])
    parts = s.split(str(sep)) if n < 0 else s.split(str(sep), n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _join(items: Any, sep: Any = "") -> celtypes.StringType:
    if not isinstance(items, list):
        raise _no_overload("join", items)
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _replace(s: str, old: Any, new: Any, n: Any = -1) -> celtypes.StringType:
    return celtypes.StringType(s.replace(str(old), str(new), int(n)))


def _find(s: str, pattern: Any) -> celtypes.StringType:
    m = re.search(str(pattern), s)
    return celtypes.StringType(m.group(0) if m else "")


def _find_all(s: str, pattern: Any, limit: Any = -1) -> celtypes.ListType:
    found = [celtypes.StringType(m.group(0)) for m in re.finditer(str(pattern), s)]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


def _is_sorted(items: Any) -> celtypes.BoolType:
    if not isinstance(items, list):
        raise _no_overload("isSorted", items)
    return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))


def _sum(items: Any) -> Any:
    if not isinstance(items, list):
        raise _no_overload("sum", items)
    total: Any = celtypes.IntType(0)
    for i, v in enumerate(items):
        total = v if i == 0 else total + v
    return total


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    # Kubernetes quantity library
    "quantity": _quantity,
    "isQuantity": _is_quantity,
    "compareTo": lambda a, b: celtypes.IntType(_compare(a, b)),
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "add": _add,
    "sub": _sub,
    "asInteger": _q_only("asInteger", _as_integer),
    "isInteger": _q_only("isInteger", lambda q: celtypes.BoolType(q.value.denominator == 1)),
    "asApproximateFloat": _q_only("asApproximateFloat", lambda q: celtypes.DoubleType(float(q.value))),
    "sign": _q_only("sign", lambda q: celtypes.IntType((q.value > 0) - (q.value < 0))),
    # Kubernetes semver library
    "semver": _semver,
    "isSemver": _is_semver,
    "major": _semver_part("major"),
    "minor": _semver_part("minor"),
    "patch": _semver_part("patch"),
    # Kubernetes extended strings (cel-go ext.Strings) — subset
    "lowerAscii": _str_fn("lowerAscii", lambda s: celtypes.StringType(s.lower())),
    "upperAscii": _str_fn("upperAscii", lambda s: celtypes.StringType(s.upper())),
    "trim": _str_fn("trim", lambda s: celtypes.StringType(s.strip())),
    "charAt": _str_fn("charAt", lambda s, i: celtypes.StringType(s[int(i)] if int(i) < len(s) else "")),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _str_fn("substring", _substring),
    "split": _str_fn("split", _split),
    "replace": _str_fn("replace", _replace),
    "join": _join,
    "reverse": _str_fn("reverse", lambda s: celtypes.StringType(s[::-1])),
    # Kubernetes regex library
    "find": _str_fn("find", _find),
    "findAll": _str_fn("findAll", _find_all),
    # Kubernetes lists library — subset
    "isSorted": _is_sorted,
    "sum": _sum,
}


# ---------------------------------------------------------------------------------------------
# The `device` variable.


class _DomainMap(celtypes.MapType):
    """``device.attributes`` / ``device.capacity``: an unknown domain is an empty map, not an error
    (reference §2), so the error surfaces on the next field access as ``no such key: <id>``."""

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            return celtypes.MapType({})


def _attribute_value(value: Mapping[str, Any]) -> Any:
    if "string" in value:
        return celtypes.StringType(value["string"])
    if "bool" in value:
        return celtypes.BoolType(bool(value["bool"]))
    if "int" in value:
        return celtypes.IntType(int(value["int"]))
    if "version" in value:
        return Semver(str(value["version"]))
    raise CelRuntimeError("unsupported attribute value")


def _split_name(name: str, driver: str) -> tuple[str, str]:
    domain, sep, ident = name.partition("/")
    return (domain, ident) if sep else (driver, name)


def device_activation(driver: str, device: Mapping[str, Any]) -> dict[str, Any]:
    """The CEL ``device`` variable for one ResourceSlice device (v1 JSON).

    Attribute errors (a version that is not semver) raise ``CelRuntimeError`` with the text the
    real allocator uses (``attribute <name>: parse semantic version: …``)."""
    attrs: dict[str, dict[str, Any]] = {}
    for name, value in (device.get("attributes") or {}).items():
        domain, ident = _split_name(name, driver)
        try:
            converted = _attribute_value(value)
        except ValueError as e:
            raise CelRuntimeError(f"attribute {name}: parse semantic version: {e}") from e
        except CelRuntimeError as e:
            raise CelRuntimeError(f"attribute {name}: {e}") from e
        attrs.setdefault(domain, {})[ident] = converted
    caps: dict[str, dict[str, Any]] = {}
    for name, value in (device.get("capacity") or {}).items():
        domain, ident = _split_name(name, driver)
        caps.setdefault(domain, {})[ident] = Quantity(str(value.get("value", "0")))
    return {
        "device": celtypes.MapType(
            {
                celtypes.StringType("driver"): celtypes.StringType(driver),
                celtypes.StringType("allowMultipleAllocations"): celtypes.BoolType(
                    bool(device.get("allowMultipleAllocations", False))
                ),
                celtypes.StringType("attributes"): _DomainMap(
                    {celtypes.StringType(d): celtypes.MapType(m) for d, m in attrs.items()}
                ),
                celtypes.StringType("capacity"): _DomainMap(
                    {celtypes.StringType(d): celtypes.MapType(m) for d, m in caps.items()}
                ),
            }
        )
    }


# ---------------------------------------------------------------------------------------------
# Compilation and evaluation.

_NO_MEMBER = re.compile(r"^no such member in mapping: '(.*)'$")
_NO_OVERLOAD = re.compile(r"^found no matching overload for Token\('RULE', '(\w+)'\) applied to '\((.*)\)'$")
_OPERATORS = {
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_gt": "_>_",
    "relation_ge": "_>=_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "@in",
    "addition_add": "_+_",
    "addition_sub": "_-_",
    "multiplication_mul": "_*_",
    "multiplication_div": "_/_",
    "multiplication_mod": "_%_",
}
_PY_CLASS = re.compile(r"<class '([\w.]+)'>")


def _runtime_message(err: CELEvalError) -> str:
    """cel-go's wording for the error celpy produced (``no such key: <k>``)."""
    msg = str(err.args[0]) if err.args else str(err)
    m = _NO_MEMBER.match(msg)
    if m:
        return f"no such key: {m.group(1)}"
    if msg == "no such key":
        detail = err.args[2] if len(err.args) > 2 else None
        key = detail[0] if isinstance(detail, tuple) and detail else ""
        return f"no such key: {key}"
    m = _NO_OVERLOAD.match(msg)
    if m:
        op = _OPERATORS.get(m.group(1), m.group(1))
        args = _PY_CLASS.sub(lambda c: _PY_TYPE_NAMES.get(c.group(1).rsplit(".", 1)[-1], c.group(1)), m.group(2))
        return f"found no matching overload for '{op}' applied to '({args})'"
    if msg.startswith("undeclared reference to"):
        name = msg.split("'")[1] if "'" in msg else msg
        return f"no such overload: {name}"
    return msg


_PY_TYPE_NAMES = {
    "StringType": "string",
    "IntType": "int",
    "UintType": "uint",
    "DoubleType": "double",
    "BoolType": "bool",
    "MapType": "map",
    "ListType": "list",
    "Quantity": "kubernetes.Quantity",
    "Semver": "kubernetes.Semver",
}

_CEL_TYPE_NAMES: dict[type, str] = {
    celtypes.StringType: "string",
    celtypes.IntType: "int",
    celtypes.UintType: "uint",
    celtypes.DoubleType: "double",
    celtypes.MapType: "map",
    celtypes.ListType: "list",
    Quantity: "kubernetes.Quantity",
    Semver: "kubernetes.Semver",
}


@dataclass(frozen=True)
class SelectorProgram:
    """One compiled selector expression; ``matches`` evaluates it for a ``device_activation``."""

    expression: str
    runner: celpy.Runner

    def matches(self, activation: Mapping[str, Any]) -> bool:
        try:
            result = self.runner.evaluate(dict(activation))
        except CELEvalError as e:
            raise CelRuntimeError(_runtime_message(e)) from e
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise CelRuntimeError(str(e) or type(e).__name__) from e
        if isinstance(result, CELEvalError):
            raise CelRuntimeError(_runtime_message(result))
        if isinstance(result, bool):  # BoolType subclasses int, not bool; plain bool is fine too
            return result
        if isinstance(result, celtypes.BoolType):
            return bool(result)
        type_name = _CEL_TYPE_NAMES.get(type(result), type(result).__name__)
        raise CelRuntimeError(
            f"CEL result of type {type_name} could not be converted to bool: "
            f"type conversion error from '{type_name}' to 'bool'"
        )


_ENV = celpy.Environment()
_CACHE: dict[str, SelectorProgram | CelCompileError] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 4096


def compile_selector(expression: str) -> SelectorProgram:
    """Compile (cached, like the scheduler's CEL cache) or raise ``CelCompileError``."""
    with _CACHE_LOCK:
        hit = _CACHE.get(expression)
    if hit is None:
        try:
            ast = _ENV.compile(expression)
            hit = SelectorProgram(expression, _ENV.program(ast, functions=_FUNCTIONS))
        except CELParseError as e:
            line = e.line or 1
            col = e.column or 1
            first = str(e).splitlines()[0] if str(e) else "syntax error"
            hit = CelCompileError(f"compilation failed: ERROR: <input>:{line}:{col}: Syntax error: {first}")
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.clear()
            _CACHE[expression] = hit
    if isinstance(hit, CelCompileError):
        raise hit
    return hit
