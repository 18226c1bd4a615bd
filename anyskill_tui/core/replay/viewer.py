"""The interactive MuJoCo viewer window (`mujoco.viewer.launch_passive`) stepping a replay in real time.

It shows env 0 of the rollout (one MjData) and loops the replay until the window is closed. It needs a display
(DISPLAY or WAYLAND_DISPLAY); without one, `require_display()` raises the one clear error the CLI prints.
"""

from __future__ import annotations

import os
import time
from typing import Any

from anyskill_tui.errors import UserError

__all__ = ["NO_DISPLAY_MESSAGE", "has_display", "require_display", "run_viewer"]

NO_DISPLAY_MESSAGE = (
    "no display: the viewer window needs one (DISPLAY/WAYLAND_DISPLAY is unset); use --out FILE.mp4 to write a "
    "video, or replay inside the TUI"
)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def require_display() -> None:
    """Raise a UserError (exit 1) with `NO_DISPLAY_MESSAGE` when there is no display."""
    if not has_display():
        raise UserError(NO_DISPLAY_MESSAGE)


def run_viewer(policy: Any, opts: Any, loops: int | None = None) -> None:  # pragma: no cover - needs a display
    """Open the viewer on env 0 of a replay of `policy` under `opts`; replay until the window closes (or
    `loops` replays)."""
    require_display()
    import mujoco
    import mujoco.viewer

    from anyskill_tui.core.replay.rollout import Rollout

    with Rollout(policy, opts) as ro:
        env = ro.env
        model = getattr(env.backend, "model", None)
        if model is None or not isinstance(model, mujoco.MjModel):
            from anyskill_tui.core.character.model import load_model

            model = load_model()
        data = mujoco.MjData(model)
        nq = data.qpos.shape[0]
        done = 0
        with mujoco.viewer.launch_passive(model, data) as v:
            # follow the pelvis from the replay camera's distance, a little from the side and above
            v.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            v.cam.trackbodyid = 1
            v.cam.distance = 3.5
            v.cam.elevation = -12.0
            v.cam.azimuth = 160.0
            while v.is_running() and (loops is None or done < loops):
                start = time.perf_counter()
                for fr in ro.frames(render=False):
                    if not v.is_running():
                        break
                    data.qpos[:] = fr.qpos[0, :nq]
                    mujoco.mj_forward(model, data)
                    v.sync()
                    wait = start + fr.time - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                done += 1
