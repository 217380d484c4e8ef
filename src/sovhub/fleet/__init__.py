"""Replicas that behave as one hub: shared invalidation, leases for periodic work, the shutdown drain.

* :mod:`.redis`: the fleet's Redis connections and this replica's id;
* :mod:`.invalidation`: a change made anywhere reaches every replica's caches within a second;
* :mod:`.leases`: periodic work (retention purge, audit signing) runs once across replicas;
* :mod:`.drain`: SIGTERM turns readiness off at once, serves on for ``server.drain_seconds``, then ends
  what is still running with an in-band error, metered, before the process exits.
"""
