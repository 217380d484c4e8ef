"""Polling the energy and carbon sources that live behind HTTP, through the egress guard.

GPU servers' energy counters (DCGM exporter) every ``energy.gpu_poll_s``; Electricity Maps v3
``/carbon-intensity/latest`` and ``/power-breakdown/latest`` every ``energy.intensity_refresh_s``.
A failed read keeps the last value (and is logged); the accountant never waits for the network.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import SovhubError
from .accountant import EnergyAccountant, Grid
from .gpu import parse_dcgm_joules

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["poll_gpus", "poll_intensity", "read_electricitymaps"]

log = logging.getLogger("sovhub.energy")


async def poll_gpus(hub: Hub, accountant: EnergyAccountant, http: httpx.AsyncClient) -> None:
    while True:
        for backend, url in hub.settings.energy.gpu_metrics.items():
            try:
                response = await http.get(url, timeout=5.0)
                response.raise_for_status()
                joules = parse_dcgm_joules(response.text)
                if joules is not None:
                    accountant.gpu_latest[backend] = joules
                else:
                    log.warning("no DCGM energy counter at %s (backend %s)", url, backend)
            except (httpx.HTTPError, SovhubError) as exc:
                log.warning("reading GPU energy of backend %s failed: %s", backend, exc)
        await asyncio.sleep(hub.settings.energy.gpu_poll_s)


async def read_electricitymaps(hub: Hub, http: httpx.AsyncClient) -> Grid:
    s = hub.settings.energy
    base = s.electricitymaps_url.rstrip("/")
    params = {"zone": s.electricitymaps_zone} if s.electricitymaps_zone else {}
    headers = {"auth-token": s.electricitymaps_token} if s.electricitymaps_token else {}
    intensity = await http.get(f"{base}/v3/carbon-intensity/latest", params=params, headers=headers, timeout=10.0)
    intensity.raise_for_status()
    data: dict[str, Any] = intensity.json()
    share = None
    breakdown = await http.get(f"{base}/v3/power-breakdown/latest", params=params, headers=headers, timeout=10.0)
    if breakdown.status_code == 200:
        pct = breakdown.json().get("renewablePercentage")
        share = float(pct) / 100 if pct is not None else None
    value = data.get("carbonIntensity")
    return Grid(float(value) if value is not None else None, share, "electricitymaps")


async def poll_intensity(hub: Hub, accountant: EnergyAccountant, http: httpx.AsyncClient) -> None:
    while True:
        try:
            accountant.grid_latest = await read_electricitymaps(hub, http)
        except (httpx.HTTPError, SovhubError, ValueError) as exc:
            log.warning("reading carbon intensity from Electricity Maps failed: %s", exc)
        await asyncio.sleep(hub.settings.energy.intensity_refresh_s)
