"""A level-triggered control loop: watches only mark it dirty, one worker runs a full pass.

The scheduler and the resourceclaim controller both reconcile "everything pending" rather than one object per
event: an event says only *that* something changed, and the pass reads the current state. That makes missed or
coalesced events harmless (the next pass sees the result) and keeps per-event work to a flag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from kubetwin.api.core import Api, Watch, WatchEvent
from kubetwin.api.resources import ResourceType

log = logging.getLogger(__name__)
Relevant = Callable[[ResourceType, WatchEvent], bool]


class PassLoop:
    """Runs ``run_pass`` whenever a watched kind changed (or ``next_wait()`` seconds passed)."""

    def __init__(self, api: Api, name: str, kinds: Sequence[ResourceType], run_pass: Callable[[], object], *,
                 relevant: Relevant | None = None, next_wait: Callable[[], float] = lambda: 5.0,
                 error_delay_s: float = 0.5) -> None:
        self.api = api
        self.name = name
        self.kinds = tuple(kinds)
        self.run_pass = run_pass
        self.relevant = relevant
        self.next_wait = next_wait
        self.error_delay_s = error_delay_s
        self.stopping = threading.Event()
        self._dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Watch] = []

    def mark_dirty(self) -> None:
        """Ask for another pass (e.g. after a write that other pending work may depend on)."""
        self._dirty.set()

    def start(self) -> list[threading.Thread]:
        """Open the watches (events are read without copying: only a flag is set) and start the worker."""
        for rt in self.kinds:
            w = self.api.watch(rt, copy_objects=False)
            self._watches.append(w)
            self._threads.append(threading.Thread(target=self._watch_loop, args=(rt, w), daemon=True,
                                                  name=f"{self.name}-watch-{rt.plural}"))
        self._threads.append(threading.Thread(target=self._loop, daemon=True, name=self.name))
        for t in self._threads:
            t.start()
        self._dirty.set()
        return list(self._threads)

    def stop(self) -> None:
        self.stopping.set()
        self._dirty.set()
        for w in self._watches:
            w.stop()
        for t in self._threads:
            t.join(timeout=5)

    def _watch_loop(self, rt: ResourceType, w: Watch) -> None:
        while not self.stopping.is_set():
            ev = w.next(0.5)
            if ev is None:
                if w.stopped:
                    return
                continue
            if self.relevant is None or self.relevant(rt, ev):
                self._dirty.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._dirty.wait(self.next_wait())
            if self.stopping.is_set():
                return
            self._dirty.clear()
            try:
                self.run_pass()
            except Exception:
                log.exception("%s: pass failed; retrying in %.1f s", self.name, self.error_delay_s)
                self._dirty.set()
                self.stopping.wait(self.error_delay_s)


__all__ = ["PassLoop", "Relevant"]
