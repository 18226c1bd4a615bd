"""CLI command groups, one Typer sub-app per module. Keep module-level imports light (no torch/mujoco)."""
