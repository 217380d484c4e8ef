"""`sovhub energy ...` commands."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import pass_hub
from ..hub import Hub

__all__ = ["add_commands"]


@click.group("energy")
def energy() -> None:
    """Energy measurement: calibrate the CPU's power per core."""


@energy.command("calibrate")
@click.option("--seconds", type=click.FloatRange(min=1, max=600), default=10.0, show_default=True,
              help="How long one core is kept busy.")
@pass_hub
def energy_calibrate(hub: Hub, seconds: float) -> None:
    """Measure the watts of one busy core with RAPL and keep the figure in the data dir."""
    from .accountant import CALIBRATION_FILE
    from .calibrate import calibrate

    s = hub.settings.energy
    result = calibrate(hub.settings.data_dir, Path(s.rapl_dir), Path(s.proc_stat), seconds, CALIBRATION_FILE)
    click.echo(f"{result['watts_per_core']:.2f} W per busy core ({result['joules']:.1f} J over "
               f"{result['busy_cpu_s']:.1f} busy CPU-seconds); written to {hub.settings.data_dir / CALIBRATION_FILE}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(energy)
