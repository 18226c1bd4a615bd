"""anyskill: a terminal workbench for open-vocabulary physical skills of a simulated humanoid."""

__version__ = "0.1.0"
