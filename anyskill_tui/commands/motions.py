"""`anyskill motions ...`: inspect, validate, view and import motion clips."""

from __future__ import annotations

import typer

app = typer.Typer(help="Motion clips and datasets: info, validate, view, import BVH.", no_args_is_help=True)
