"""Batched dream serving: the dream steps that many players ask for at about the same time are run as one batched
forward pass per model, so a room's cost grows with the number of models in use, not the number of players.

No thread of its own: the first request for a model waits `wait_ms` for others to join (unless no other dream
of that model stepped in the last second: a lone player never waits), then, holding that
model's lock, takes every request that arrived meanwhile (including those that queued while the previous batch
ran) and steps them with `Dream.step_together`. Each dream keeps its own random stream and the layers keep each
row's sums in the same order whatever the batch (`models.steady.Linear`, `Conv2d`), so a player sees exactly the
frames an unbatched step gives (tests/test_batcher.py). A family whose capabilities say `batched_play=False`
(diffusion: compute-bound, nothing to gain) steps each player alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from ..dream import Dream


@dataclass
class _Request:
    dream: Dream
    action: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class StepBatcher:
    """`step(dream, action)` from any number of threads; requests for one model within `wait_ms` of each other
    (up to `max_batch`) share one forward pass. `wait_ms=0` steps each dream alone."""

    def __init__(self, wait_ms: float = 3.0, max_batch: int = 64) -> None:
        self.wait_s, self.max_batch = max(0.0, wait_ms) / 1000.0, max(1, max_batch)
        self._lock = threading.Lock()
        self._pending: dict[Hashable, list[_Request]] = {}
        self._model_locks: dict[Hashable, threading.Lock] = {}
        self._seen: dict[Hashable, dict[int, float]] = {}  # key -> {id(dream): when it last stepped}
        self.batches = 0  # forward passes run, and the dream steps they carried (for benchmarks)
        self.steps = 0

    def step(self, dream: Dream, action: Any) -> tuple[Any, float, bool, dict[str, Any]]:
        """What `dream.step(action)` returns, computed together with other players' steps of the same model."""
        if self.wait_s == 0 or dream.batched or not dream.model.capabilities.batched_play:
            result = dream.step(action)
            with self._lock:
                self.batches, self.steps = self.batches + 1, self.steps + 1
            return result
        key, request = dream.batch_key(), _Request(dream, action)
        now = time.monotonic()
        with self._lock:
            queue = self._pending.setdefault(key, [])
            queue.append(request)
            leads = len(queue) == 1
            model_lock = self._model_locks.setdefault(key, threading.Lock())
            seen = self._seen.setdefault(key, {})
            seen[id(dream)] = now
            for d in [d for d, t in seen.items() if now - t > 1.0]:
                del seen[d]
            alone = len(seen) == 1  # nobody else played this model in the last second: nobody to wait for
        if leads:
            if not alone:
                time.sleep(self.wait_s)  # let the other players' requests of this tick arrive
            with model_lock:
                with self._lock:
                    batch = self._pending.pop(key)
                for start in range(0, len(batch), self.max_batch):
                    self._run(batch[start : start + self.max_batch])
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _run(self, batch: list[_Request]) -> None:
        try:
            results = Dream.step_together([r.dream for r in batch], [r.action for r in batch])
        except BaseException as e:  # every waiting player gets the error, none waits forever
            for r in batch:
                r.error = e
                r.done.set()
            return
        self.batches, self.steps = self.batches + 1, self.steps + len(batch)
        for r, result in zip(batch, results):
            r.result = result
            r.done.set()
