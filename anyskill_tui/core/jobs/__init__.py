"""Run lifecycle: detached runners, heartbeats, stop/resume, the queue, metrics tailing, the Isaac Gym runner.

Modules (import the one you need; none imports torch, Textual or mujoco at import time):

- :mod:`.launcher`: ``start_run``, ``stop_run``, ``resume_run``, ``reconcile``, ``run_dir_for``.
- :mod:`.runner`: the shim ``python -m anyskill_tui.core.jobs.runner --workspace W --run ID``.
- :mod:`.trainers`: ``TRAINERS`` (kind -> "module:function"), ``TrainContext``, ``read_progress``, the toy.
- :mod:`.checkpoints`: ``save_checkpoint`` (atomic), ``load_checkpoint``, ``latest_checkpoint``.
- :mod:`.metrics`: ``MetricsTail`` (offset tailer of event files), ``downsample``, ``MetricsWriter``.
- :mod:`.queue`: ``enqueue``, ``Worker``.
- :mod:`.isaacgym`: ``build_command(s)``, ``IsaacGymJob`` (reference ``calm/run.py`` as a child).

A run's folder (``WORKSPACE/runs/<id>/``)::

    train.log                 runner + trainer output (appended across resumes)
    progress.json             step, total, rate, ETA of the current session
    metrics/events.out.tfevents.*     our trainers' scalars (one file per session)
    checkpoints/ckpt_<step>.pt + latest
    texts.yaml, output/<exp>/{summaries,nn}/   Isaac Gym runs
"""
