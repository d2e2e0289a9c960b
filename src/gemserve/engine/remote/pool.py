"""Routing one model's requests over its upstreams.

- **Least in flight**, under a per-upstream cap; ties go to the upstream that got the fewest
  requests so far, so a uniform load splits evenly.
- **Affinity**: a request with a key (a conversation) prefers the upstream that served that
  key last, so the upstream's prefix cache hits, unless that upstream is at its cap or has
  ``AFFINITY_SLACK`` more requests in flight than the least loaded one.
- **Saturation**: a 429 or 503 puts an upstream in backoff (its Retry-After, else doubling
  from ``timeouts.backoff``); the request tries the others. When every upstream is at its
  cap or in backoff the pool raises ``ResourceExhausted`` with the shortest wait.
- **Ejection**: no answer, a 5xx or a stream cut short ejects an upstream; the health loop
  probes it every ``timeouts.health_interval`` and re-admits it once it answers. When every
  upstream is ejected, requests try them anyway (a pool is never empty on a blip).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from gemserve.config.remote import RemoteTimeouts, UpstreamKind
from gemserve.engine.remote.client import UpstreamClient, UpstreamInfo
from gemserve.errors import ResourceExhausted, Unavailable

log = logging.getLogger("gemserve.remote")

AFFINITY_SLACK = 4
AFFINITY_KEYS = 65_536  # conversations remembered (least recently used forgotten)


@dataclass(eq=False)
class Upstream:
    index: int
    client: UpstreamClient
    cap: int
    kind: UpstreamKind  # "auto" until discovered
    model: str | None  # the upstream model name to send
    in_flight: int = 0
    healthy: bool = True
    requests: int = 0  # routed here, ever
    failures: int = 0  # ejections, ever
    saturations: int = 0  # 429/503 answers, ever
    backoff_until: float = 0.0
    backoff: float = 0.0  # the current backoff step (0: none)
    ejected_at: float = 0.0
    last_error: str | None = None
    info: UpstreamInfo | None = None
    # Requests whose stream has produced its first token here.
    served: int = field(default=0)

    @property
    def url(self) -> str:
        return self.client.url


class UpstreamLease:
    """One request's hold on an upstream's capacity; released exactly once."""

    __slots__ = ("_pool", "_released", "upstream")

    def __init__(self, pool: UpstreamPool, upstream: Upstream) -> None:
        self._pool = pool
        self.upstream = upstream
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self.upstream)


class UpstreamPool:
    def __init__(
        self,
        model_id: str,
        upstreams: list[Upstream],
        timeouts: RemoteTimeouts,
        *,
        affinity: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_id = model_id
        self.upstreams = upstreams
        self._timeouts = timeouts
        self._affinity_on = affinity
        self._affinity: OrderedDict[str, int] = OrderedDict()
        self._clock = clock
        self._health_task: asyncio.Task[None] | None = None
        self.on_readmit: Callable[[Upstream], Awaitable[None]] | None = None

    # ----- choosing ------------------------------------------------------------------------

    def acquire(self, affinity: str | None, exclude: Collection[Upstream] = ()) -> UpstreamLease:
        """The upstream for the next attempt of a request, or an error for the client:
        ``ResourceExhausted`` (every usable upstream at its cap or backing off) or
        ``Unavailable`` (every upstream was tried and failed)."""
        now = self._clock()
        left = [u for u in self.upstreams if u not in exclude]
        healthy = [u for u in left if u.healthy]
        # Panic mode: with every upstream ejected, the ejected ones are tried anyway.
        usable = healthy if healthy or any(u.healthy for u in self.upstreams) else left
        ready = [u for u in usable if u.in_flight < u.cap and u.backoff_until <= now]
        if not ready:
            raise self._refusal(now)
        chosen = None
        if affinity is not None and self._affinity_on:
            index = self._affinity.get(affinity)
            least = min(u.in_flight for u in ready)
            preferred = next((u for u in ready if u.index == index), None)
            if preferred is not None and preferred.in_flight <= least + AFFINITY_SLACK:
                chosen = preferred
        if chosen is None:
            chosen = min(ready, key=lambda u: (u.in_flight, u.requests, u.index))
        if affinity is not None and self._affinity_on:
            self._affinity[affinity] = chosen.index
            self._affinity.move_to_end(affinity)
            while len(self._affinity) > AFFINITY_KEYS:
                self._affinity.popitem(last=False)
        chosen.in_flight += 1
        chosen.requests += 1
        return UpstreamLease(self, chosen)

    def _refusal(self, now: float) -> ResourceExhausted | Unavailable:
        """Busy (a 429 with the shortest backoff) when any live upstream is at its cap or
        backing off, else unavailable."""
        live = [u for u in self.upstreams if u.healthy]
        waits = [u.backoff_until - now for u in live if u.backoff_until > now]
        busy = any(u.in_flight >= u.cap for u in live)
        if waits or busy:
            retry = 1 if busy or not waits else max(1, math.ceil(min(waits)))
            return ResourceExhausted(
                f"Every upstream of model {self.model_id!r} is busy; retry in {retry} s.",
                retry_after=retry,
            )
        errors = [u.last_error for u in self.upstreams if u.last_error]
        detail = f" (last error: {errors[-1]})" if errors else ""
        return Unavailable(
            f"No upstream of model {self.model_id!r} could take the request{detail}; retry shortly."
        )

    def _release(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1

    # ----- outcomes ------------------------------------------------------------------------

    def succeeded(self, upstream: Upstream) -> None:
        """It answered (first token): backoff over."""
        upstream.backoff = 0.0
        upstream.backoff_until = 0.0
        upstream.served += 1

    def saturated(self, upstream: Upstream, retry_after: float | None) -> None:
        """A 429 or 503: wait before sending it more."""
        if retry_after is not None:
            delay = min(retry_after, self._timeouts.max_backoff)
        else:
            step = upstream.backoff * 2 if upstream.backoff else self._timeouts.backoff
            delay = min(step, self._timeouts.max_backoff)
        upstream.backoff = delay
        upstream.backoff_until = self._clock() + delay
        upstream.saturations += 1
        log.warning(
            "model %s: upstream %s is saturated; backing off %.1f s",
            self.model_id,
            upstream.url,
            delay,
        )

    def failed(self, upstream: Upstream, reason: str) -> None:
        """No answer, a server error or a broken stream: eject it until a health check
        passes."""
        upstream.last_error = reason
        if upstream.healthy:
            upstream.healthy = False
            upstream.failures += 1
            upstream.ejected_at = self._clock()
            log.warning("model %s: upstream %s ejected: %s", self.model_id, upstream.url, reason)

    # ----- health --------------------------------------------------------------------------

    def start(self) -> None:
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop())

    async def close(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._timeouts.health_interval)
            await self.check_health()

    async def check_health(self) -> None:
        """Probe every upstream once: eject the silent ones, re-admit those that answer."""
        results = await asyncio.gather(*(u.client.health(u.kind) for u in self.upstreams))
        for upstream, ok in zip(self.upstreams, results, strict=True):
            if ok and not upstream.healthy:
                upstream.healthy = True
                log.info("model %s: upstream %s re-admitted", self.model_id, upstream.url)
                if self.on_readmit is not None:
                    await self.on_readmit(upstream)
            elif not ok and upstream.healthy:
                self.failed(upstream, "the health check failed")

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for u in self.upstreams:
            prefix = f"upstream{u.index}_"
            out[prefix + "in_flight"] = float(u.in_flight)
            out[prefix + "requests"] = float(u.requests)
            out[prefix + "healthy"] = 1.0 if u.healthy else 0.0
            out[prefix + "ejections"] = float(u.failures)
            out[prefix + "saturations"] = float(u.saturations)
        return out
