"""The Batch API: deferred requests run on idle capacity, shared by replicas through row leases."""
