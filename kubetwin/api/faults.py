"""A fault switch for the twin's HTTP front end: the failures a real API server and network produce.

Clients must survive what real clusters do under load or during a control-plane restart — 5xx answers, 429
with ``Retry-After``, watches that drop without a word, ``410 Expired`` when a watch resumes from an old
resourceVersion, slow answers — and a test should be able to *measure* that, not assume it. The switch is a
spec string, from the ``KUBETWIN_FAULTS`` environment variable when the server starts (so ``twin up`` and
in-process twins both take it) or :meth:`Faults.configure` at run time::

    5xx:0.1            one request in ten answers 503 ServiceUnavailable
    429:0.2:1          one in five answers 429 TooManyRequests with Retry-After: 1
    drop-watch:0.5     every second watch ends at once, without any event (the client must reconnect)
    410:0.3            three watches in ten that resume from a resourceVersion get a 410 Expired ERROR event
    slow:0.2:0.5       one request in five waits 0.5 s before it is served
    crash:NAME         every container named NAME (or whose image repository contains NAME) exits 1 at start
                       with a log line naming the fault; the kubelet restarts it into CrashLoopBackOff
    node-notready:NODE NODE's heartbeat stops and its conditions go Unknown (``NodeStatusUnknown``, "Kubelet
                       stopped posting node status.") with the ``unreachable`` taints, as the node lifecycle
                       controller sets them (no NODE: every node); turning it off brings the node back Ready

Embedders may name their own faults as aliases of these (:func:`register_alias`, e.g. dra-lab's
``plugin-crash`` = ``crash:`` its GPU plugin container), so kubetwin stays vendor-neutral.

Rates are applied evenly and deterministically (the n-th matching request is hit when ``ceil(n*rate)``
grows: the first one always), so a run is repeatable. Faults touch only HTTP clients (the suite, kubectl,
helm, emulated driver binaries); in-process controllers, scheduler and kubelets use the API directly.
Every injected answer says so in its message (``injected fault: …``), so a failure caused by one names it.
``crash`` and ``node-notready`` act in the kubelets and node agents (they consult the same switch).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubetwin.errors import ConfigError

ENV_VAR = "KUBETWIN_FAULTS"


class _Responder(Protocol):
    """What a fault needs from the request handler (the twin's handler has these)."""

    def _send_bytes(self, code: int, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> None: ...

    def _start_stream(self, content_type: str) -> None: ...

    def _chunk(self, data: bytes) -> None: ...

    def _end_stream(self) -> None: ...


@dataclass
class FaultRule:
    """One kind of fault and how often it strikes."""

    name: str
    """``5xx``, ``429``, ``drop-watch``, ``410`` or ``slow``."""
    rate: float
    """Fraction of matching requests hit (0..1)."""
    arg: float = 0.0
    """``429``: Retry-After seconds; ``slow``: delay seconds."""
    target: str = ""
    """``crash``: container name or image repository part; ``node-notready``: node name (empty: every node)."""
    seen: int = 0
    """Matching requests so far."""
    hits: int = 0
    """Requests hit so far."""

    def strikes(self) -> bool:
        self.seen += 1
        if math.ceil(self.seen * self.rate - 1e-9) > math.ceil((self.seen - 1) * self.rate - 1e-9):
            self.hits += 1
            return True
        return False


#: fault name -> (applies to watch requests, to other requests, default argument)
KINDS: dict[str, tuple[bool, bool, float]] = {
    "5xx": (True, True, 0.0),
    "429": (True, True, 1.0),
    "drop-watch": (True, False, 0.0),
    "410": (True, False, 0.0),
    "slow": (True, True, 0.5),
}


TARGETED: dict[str, bool] = {"crash": True, "node-notready": False}
"""Faults outside HTTP, taking a target instead of rate/argument -> whether the target is required."""

_aliases: dict[str, str] = {}
_aliases_lock = threading.Lock()


def register_alias(name: str, spec: str) -> None:
    """Let ``name`` stand for ``spec`` in fault specs (an embedder's own fault names; ``spec`` is validated)."""
    parse(spec)
    with _aliases_lock:
        _aliases[name] = spec


def parse(spec: str) -> list[FaultRule]:
    """Rules from a spec string (see the module docstring); ConfigError naming the bad part."""
    rules: list[FaultRule] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        with _aliases_lock:
            alias = _aliases.get(part)
        if alias is not None:
            rules += parse(alias)
            continue
        name, *nums = part.split(":")
        if name in TARGETED:
            target = ":".join(nums)
            if TARGETED[name] and not target:
                raise ConfigError(f"fault {part!r} needs a target ({name}:NAME)", where=ENV_VAR)
            rules.append(FaultRule(name, 1.0, target=target))
            continue
        if name not in KINDS or len(nums) > 2:
            known = ", ".join([*KINDS, *TARGETED, *sorted(_aliases)])
            raise ConfigError(f"unknown fault {part!r} (known: {known}; form name[:rate[:arg]] or name:TARGET)",
                              where=ENV_VAR)
        try:
            rate = float(nums[0]) if nums else 1.0
            arg = float(nums[1]) if len(nums) > 1 else KINDS[name][2]
        except ValueError:
            raise ConfigError(f"fault {part!r}: rate and argument are numbers", where=ENV_VAR) from None
        if not 0 <= rate <= 1 or arg < 0:
            raise ConfigError(f"fault {part!r}: rate in 0..1, argument at least 0", where=ENV_VAR)
        rules.append(FaultRule(name, rate, arg))
    return rules


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code}).encode()


@dataclass
class Faults:
    """The switch one API server consults for every resource request."""

    rules: list[FaultRule] = field(default_factory=list)
    """Active rules (empty: no faults)."""
    sleep: Callable[[float], None] = time.sleep
    """How ``slow`` waits (tests pass a fake)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> Faults:
        return cls(parse(os.environ.get(ENV_VAR, "")))

    def configure(self, spec: str) -> None:
        """Replace the rules (``""`` turns faults off)."""
        rules = parse(spec)
        with self._lock:
            self.rules = rules
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every :meth:`configure` (node agents act at once, not at their next beat)."""
        with self._lock:
            self._listeners.append(listener)

    def crash(self, container: str, image: str) -> str | None:
        """The log line of an injected ``crash`` for this container, or None when it starts normally."""
        with self._lock:
            for rule in self.rules:
                if rule.name == "crash" and (rule.target == container or rule.target in image):
                    rule.seen += 1
                    rule.hits += 1
                    return (f"injected fault: crash:{rule.target} (container {container}, image {image}): "
                            f"exiting with status 1")
        return None

    def node_notready(self, node: str) -> bool:
        """Whether ``node``'s heartbeat is stopped by an injected ``node-notready``."""
        with self._lock:
            return any(r.name == "node-notready" and r.target in ("", node) for r in self.rules)

    def counts(self) -> dict[str, int]:
        """Hits per fault so far."""
        with self._lock:
            return {r.name: r.hits for r in self.rules}

    def intercept(self, h: _Responder, method: str, path: str, query: dict[str, list[str]]) -> bool:
        """Apply the faults due for this request; True when a fault answered it (the caller stops)."""
        if not self.rules or not path.startswith(("/api/", "/apis/")):
            return False
        watch = (query.get("watch") or [""])[0] in ("1", "true") or "/watch/" in path
        resumes = bool((query.get("resourceVersion") or [""])[0] not in ("", "0"))
        for rule in list(self.rules):
            if rule.name in TARGETED:
                continue
            on_watch, on_other, _ = KINDS[rule.name]
            if not (on_watch if watch else on_other) or (rule.name == "410" and not resumes):
                continue
            with self._lock:
                if not rule.strikes():
                    continue
            if self._apply(h, rule, f"injected fault: {rule.name} ({method} {path})"):
                return True
        return False

    def _apply(self, h: _Responder, rule: FaultRule, what: str) -> bool:
        """Inject one fault; True when it answered the request."""
        if rule.name == "slow":
            self.sleep(rule.arg)
            return False
        if rule.name == "5xx":
            h._send_bytes(503, _status(503, "ServiceUnavailable", what), "application/json")
        elif rule.name == "429":
            h._send_bytes(429, _status(429, "TooManyRequests", what), "application/json",
                          {"Retry-After": str(max(1, math.ceil(rule.arg)))})
        elif rule.name == "drop-watch":
            h._start_stream("application/json")
            h._end_stream()
        elif rule.name == "410":
            h._start_stream("application/json")
            h._chunk(json.dumps({"type": "ERROR", "object": json.loads(
                _status(410, "Expired", f"too old resource version ({what})"))}).encode() + b"\n")
            h._end_stream()
        return True


__all__ = ["ENV_VAR", "KINDS", "TARGETED", "FaultRule", "Faults", "parse", "register_alias"]
