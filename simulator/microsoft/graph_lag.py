"""Entra's eventual consistency in the simulator: reads right after a write may come from a
replica that has not caught up, and show the state from before the write.

Microsoft documents that Entra ID replicates every change across geographically distributed
data centers, that this "might take several minutes", and that a call made right after a write
may reach a replica that has not been updated yet (MicrosoftDocs/SupportArticles-docs,
support/entra/entra-id/app-integration/404-not-found-error-manage-objects-microsoft-graph.md:
"wait some time and retry").

Off by default. `set(reads=N)` and/or `set(seconds=S)`: after each successful write, the next N
reads (or the reads for S seconds of the simulator's clock) of anything read before the write
answer what they answered before it. A write during the window keeps the old snapshot (the
stale replica has caught up on none of them) and opens the window again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.microsoft.graph_odata import GraphRequest, GraphResponse

Key = tuple[str, str, str, str]  # tenant, version, path, query


def _key(tenant_id: str, req: GraphRequest) -> Key:
    query = "&".join(f"{k}={v}" for k, v in sorted(req.query.items()))
    return (tenant_id, req.version, req.path.lower(), query)


@dataclass
class ReplicaLag:
    clock: Callable[[], float]
    reads: int = 0  # stale reads after each write (0 with seconds 0: off)
    seconds: float = 0.0  # how long after each write reads are stale
    stale_served: int = 0  # reads answered from the stale replica (tests look)
    _seen: dict[Key, GraphResponse] = field(default_factory=dict, repr=False)
    _snapshot: dict[Key, GraphResponse] | None = field(default=None, repr=False)
    _left: int = 0
    _until: float = 0.0

    def set(self, *, reads: int = 0, seconds: float = 0.0) -> None:
        self.reads, self.seconds = reads, seconds
        self._seen.clear()
        self._snapshot = None

    @property
    def on(self) -> bool:
        return self.reads > 0 or self.seconds > 0

    def _open(self) -> bool:
        if self._snapshot is None:
            return False
        if self._left > 0 or self.clock() < self._until:
            return True
        self._snapshot = None  # caught up
        return False

    def read(self, tenant_id: str, req: GraphRequest) -> GraphResponse | None:
        """The stale answer to a GET while the replica lags, else None (serve it live)."""
        if not self.on or not self._open():
            return None
        assert self._snapshot is not None
        stale = self._snapshot.get(_key(tenant_id, req))
        if stale is None:
            return None
        self._left = max(0, self._left - 1)
        self.stale_served += 1
        return copy.deepcopy(stale)

    def served(self, tenant_id: str, req: GraphRequest, resp: GraphResponse) -> None:
        """Remember a live GET's answer (what a lagging replica would still show)."""
        if self.on and req.method == "GET" and resp.status == 200:
            self._seen[_key(tenant_id, req)] = copy.deepcopy(resp)

    def wrote(self) -> None:
        """A write succeeded: reads lag behind it from now on, for the configured while."""
        if not self.on:
            return
        if not self._open():
            self._snapshot = dict(self._seen)
        self._left = self.reads
        self._until = self.clock() + self.seconds
