"""Settings of energy and carbon accounting (``[energy]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["EnergySettings"]


class EnergySettings(BaseModel):
    """Energy and carbon per request (docs/energy.md)."""

    forecast_file: str | None = Field(
        None, description="Carbon-intensity forecast (Electricity Maps v3 JSON or CSV), relative to the data dir."
    )
    pue: float = Field(1.0, ge=1.0, le=5.0, description="Power usage effectiveness of the site: IT energy x PUE.")
    rapl_dir: str = Field("/sys/class/powercap", description="Where RAPL's energy counters are read (powercap).")
    proc_stat: str = Field("/proc/stat", description="Where the machine's CPU time is read (shares RAPL energy).")
    cpu_watts_per_core: float | None = Field(
        None, gt=0, description="Watts one busy core draws; overrides a calibration (`sovhub energy calibrate`)."
    )
    cpu_tdp_watts: float = Field(
        65.0, gt=0, description="The CPU's TDP, for the fallback when nothing is measured: half of it, over its cores."
    )
    gpu_metrics: dict[str, str] = Field(
        default_factory=dict,
        description="Per backend name: a Prometheus URL (DCGM exporter) whose energy counter is shared among that "
        "backend's requests by tokens.",
    )
    gpu_poll_s: float = Field(15.0, gt=0, description="Seconds between reads of the GPU servers' energy counters.")
    joules_per_token: dict[str, float] = Field(
        default_factory=dict, description="Per backend name: joules per token when its server reports no energy."
    )
    intensity: Literal["none", "fixed", "csv", "electricitymaps"] = Field(
        "none", description="Where grid carbon intensity comes from."
    )
    intensity_g_per_kwh: float = Field(
        0.0, ge=0, description="With intensity=fixed: grams CO2e per kWh."
    )
    grid_renewable_share: float = Field(
        0.0, ge=0, le=1, description="With intensity=fixed: the grid's renewable share (0-1)."
    )
    intensity_file: str | None = Field(
        None, description="With intensity=csv: the grid operator's CSV (time, intensity, renewable share)."
    )
    electricitymaps_url: str = Field(
        "https://api.electricitymap.org", description="With intensity=electricitymaps: the API's base URL (v3)."
    )
    electricitymaps_zone: str | None = Field(None, description="With intensity=electricitymaps: the zone, e.g. DE.")
    electricitymaps_token: str | None = Field(None, description="With intensity=electricitymaps: the auth-token.")
    intensity_refresh_s: float = Field(900.0, gt=0, description="Seconds between reads of the intensity source.")
    contracted_renewable_share: float = Field(
        0.0, ge=0, le=1, description="Share of the site's electricity bought as renewable (PPAs, certificates)."
    )
    embodied_g_per_hour: float = Field(
        0.0, ge=0, description="Embodied emissions of the hardware per hour of use (SCI's M), for SCI only."
    )
