"""Settings of the Batch API (``[batch]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["BatchSettings"]


class BatchSettings(BaseModel):
    """The Batch API (/v1/batches): deferred work run on idle capacity, leased so replicas share it."""

    enabled: bool = Field(True, description="Run batches on this replica (the API answers either way).")
    max_lines: int = Field(50_000, ge=1, le=50_000, description="Most request lines one batch may hold.")
    concurrency: int = Field(
        1, ge=1, le=64, description="Batch lines this replica runs at once (each waits for idle capacity)."
    )
    lease_s: float = Field(
        60.0, gt=0, description="Seconds a replica holds a line it runs; another takes it over after that."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Seconds between looks for batch work when idle.")
    window_s: float = Field(
        24 * 3600.0, gt=0, description="Seconds of the `24h` completion window (shorter only for tests)."
    )
    output_expiry_days: float = Field(30.0, gt=0, le=30, description="Days output and error files are kept.")
    carbon_aware: bool = Field(
        True, description="Plan batch lines into the greenest forecast hours (energy.forecast_file) within the window."
    )
    estimated_line_s: float = Field(
        2.0, gt=0, description="Seconds one batch line is expected to take, for planning the windows it needs."
    )
    estimated_line_wh: float = Field(
        0.05, gt=0, description="Wh one batch line is expected to use, for the plan's emission estimates."
    )
    max_active_per_org: int = Field(100, ge=1, description="Unfinished batches one organization may have at once.")
    max_capacity_share: float = Field(
        1.0, gt=0, le=1, description="Largest share of a backend's capacity batch lines may take (1 = all idle)."
    )
    interactive_first: bool = Field(
        True, description="Batch lines wait in a background lane and yield to interactive requests (preemption); "
        "false: they queue with interactive requests in arrival order (FIFO sharing, for comparison)."
    )
    interactive_grace_s: float = Field(
        3.0, ge=0, le=600, description="Seconds after the last interactive request on an embedded model before batch "
        "lines may start on it again (follow-ups find the resource free and their cached prompt kept); 0 = none."
    )
    embedded_process: bool = Field(
        True, description="Run the embedded model's batch lines in a child process (its own llama.cpp of the same "
        "GGUF), stopped with SIGSTOP while interactive requests use the model and resumed after the grace (Linux; "
        "elsewhere, or false: in-process, preempted). With interactive_first only."
    )
