"""Kubernetes resource quantities (``k8s.io/apimachinery`` ``resource.Quantity``) as exact fractions.

Why here: the scheduler sums pod cpu/memory requests, the DRA allocator counts shared counters and consumable
capacity, and the CEL ``quantity`` library compares them; all three need the same exact parse (no float
rounding: ``100m`` three times is ``300m``) and the allocator writes ``consumedCapacity`` back in the API
server's canonical form.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["format_quantity", "parse_quantity"]

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


def parse_quantity(text: str) -> Fraction:
    """Exact value of a Kubernetes quantity string (``"10Gi"``, ``"500m"``, ``"1e3"``).

    Raises ``ValueError`` on a malformed quantity, like ``resource.ParseQuantity``.
    """
    m = _QUANTITY_RE.match(text.strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY_RE.pattern}'")
    number, suffix = m.group(1), m.group(2) or ""
    value = Fraction(number)
    if suffix in _BINARY_SUFFIXES:
        return value * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return value * _DECIMAL_SUFFIXES[suffix]
    return value * Fraction(10) ** int(suffix[1:])


def format_quantity(value: Fraction) -> str:
    """Canonical string of an integral quantity (BinarySI style when it is a whole multiple of a
    binary suffix, else decimal), as the API server serialises ``resource.Quantity``."""
    if value.denominator == 1:
        n = int(value)
        if n == 0:
            return "0"
        for suffix, mult in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                             ("Ki", 2**10)):
            if n % mult == 0:
                return f"{n // mult}{suffix}"
        return str(n)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{int(milli)}m"
    return str(float(value))
