"""The humanoid's MJCF, written from `tables.py`, and the MuJoCo model built from it.

Port decisions (spec §1.6 and Appendix A):
- physics at 1/120 s, 4 substeps per control step, with the `Euler` integrator. The PD damping kd is joint damping
  (below), which Euler integrates implicitly (MuJoCo's eulerdamp: it factorises M + h·diag(damping)); the actuators
  have kv = 0, so the velocity derivative `implicitfast` adds is that same diagonal and the two integrators give
  bit-identical trajectories for this model (checked over 1,536 physics steps of clip tracking and random-policy
  falls, `benchmarks/cpu_callgrind.py`). Euler skips the derivative pass: 3.4 % fewer instructions per C MuJoCo
  step. (Explicit damping, kd inside the actuator, diverges under Euler.);
- PD: the kp part through `position` actuators (in DoF order, force limited to the reference motor gears), the kd
  part as joint damping, which MuJoCo integrates implicitly and which is never clipped by the force limit.
  (kd inside a force-limited actuator blew up under random per-step targets: 10 of 20 trials at 1/120 s; with kd
  as joint damping 0 of 100. The joints' passive stiffness is zero.);
- body geoms `condim=1` (frictionless self contact), the floor `condim=3` with friction 1 (foot contacts get
  friction 1); one floor; a tracking camera named `track` whose pose the simulator sets every frame.

`humanoid_xml()` returns the file's text; `humanoid.xml` beside this module is its checked-in copy, for viewing
in other tools (a test keeps the two identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anyskill_tui.core.character import tables as T

if TYPE_CHECKING:  # pragma: no cover
    import mujoco

XML_PATH = Path(__file__).with_name("humanoid.xml")

#: the character's colour: a saturated green that stands out against the grey floor
CHARACTER_RGBA = (0.54, 0.85, 0.2, 1.0)


@dataclass(frozen=True)
class ModelOptions:
    """Knobs of the generated model; the defaults are the ones every engine uses."""

    timestep: float = T.PHYSICS_DT
    #: None: "Euler" with kd as joint damping (implicit there; bit-identical to "implicitfast" for this model and
    #: cheaper: module docstring), "implicitfast" with kd in the actuators (its velocity derivative needs it)
    integrator: str | None = None
    effort_limit_scale: float = 1.0  # forcerange = +-scale * gear; 0 disables force limits
    #: PD damping kd as joint damping (integrated implicitly and never force-limited) instead of actuator kv
    damping_in_joint: bool = True
    solver_iterations: int = 100
    ls_iterations: int = 50
    camera_fovy: float = 45.0
    #: extra MJCF inserted into <worldbody> (scene objects), and into <asset>
    scene_worldbody: str = ""
    scene_assets: str = ""


def _f(v: float) -> str:
    s = f"{v:.7g}"
    return "0" if s == "-0" else s


def _vec(v) -> str:
    return " ".join(_f(float(x)) for x in v)


def _geom_xml(g: T.GeomSpec, indent: str) -> str:
    attrs = [f'name="{g.name}"', f'type="{g.type}"', f'size="{_vec(g.size)}"', f'density="{_f(g.density)}"']
    if g.pos is not None:
        attrs.append(f'pos="{_vec(g.pos)}"')
    if g.fromto is not None:
        attrs.append(f'fromto="{_vec(g.fromto)}"')
    return f"{indent}<geom {' '.join(attrs)}/>\n"


def _joint_xml(d: T.DofSpec, indent: str, o: ModelOptions) -> str:
    axis = {"x": "1 0 0", "y": "0 1 0", "z": "0 0 1"}[d.axis]
    damping = f' damping="{_f(d.kd)}"' if o.damping_in_joint else ""
    return (
        f'{indent}<joint name="{d.name}" axis="{axis}" range="{_f(d.range_deg[0])} {_f(d.range_deg[1])}" '
        f'armature="{_f(d.armature)}"{damping}/>\n'
    )


def _body_xml(index: int, depth: int, o: ModelOptions) -> str:
    ind = "  " * depth
    name = T.BODY_NAMES[index]
    pos = T.LOCAL_TRANSLATION[index]
    cls = ' childclass="body"' if index == 0 else ""
    out = f'{ind}<body name="{name}" pos="{_vec(pos)}"{cls}>\n'
    if index == 0:
        out += f'{ind}  <freejoint name="root"/>\n'
    for j in T.JOINTS:
        if j.body == index:
            for d in T.DOFS[j.dof_start : j.dof_start + j.num_dofs]:
                out += _joint_xml(d, ind + "  ", o)
    for g in T.BODY_GEOMS[name]:
        out += _geom_xml(g, ind + "  ")
    for c in T.body_children(index):
        out += _body_xml(c, depth + 1, o)
    out += f"{ind}</body>\n"
    return out


def humanoid_xml(options: ModelOptions | None = None) -> str:
    """The MJCF text of the humanoid on a floor, with the given options."""
    o = options or ModelOptions()
    integrator = o.integrator or ("Euler" if o.damping_in_joint else "implicitfast")
    actuators = []
    for d in T.DOFS:
        limit = ""
        if o.effort_limit_scale > 0:
            f = o.effort_limit_scale * d.gear
            limit = f' forcelimited="true" forcerange="{_f(-f)} {_f(f)}"'
        kv = 0.0 if o.damping_in_joint else d.kd
        actuators.append(
            f'    <position name="{d.name}" joint="{d.name}" kp="{_f(d.kp)}" kv="{_f(kv)}" ctrllimited="false"{limit}/>'
        )
    rgba = _vec(CHARACTER_RGBA)
    return f"""<mujoco model="anyskill_humanoid">
  <!-- Authored by anyskill from its body tables (anyskill_tui/core/character/tables.py): structurally the
       AMP humanoid (15 bodies, 28 hinge DoF in 12 joints) so AMP/ASE/CALM/AnySkill motion files load as they are. -->
  <compiler angle="degree"/>
  <option timestep="{_f(o.timestep)}" integrator="{integrator}" iterations="{o.solver_iterations}"
          ls_iterations="{o.ls_iterations}"/>
  <size memory="4M"/>
  <statistic extent="2" center="0 0 1"/>
  <visual>
    <global offwidth="640" offheight="640"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.55 0.55 0.55" specular="0.1 0.1 0.1"/>
    <quality shadowsize="0"/>
  </visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.62 0.62 0.62" rgb2="0.52 0.52 0.52"
             width="256" height="256"/>
    <material name="floor" texture="floor" texrepeat="40 40" reflectance="0"/>
    <material name="character" rgba="{rgba}" specular="0.2"/>
{o.scene_assets}  </asset>
  <default>
    <default class="body">
      <geom condim="1" friction="1.0 0.05 0.05" solimp="0.9 0.99 0.003" solref="0.015 1" material="character"/>
      <joint type="hinge" damping="0" stiffness="0" limited="true" solimplimit="0 0.99 0.01"/>
    </default>
  </default>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 5" dir="-0.3 -0.2 -1" diffuse="0.6 0.6 0.6"
           specular="0.1 0.1 0.1" castshadow="false"/>
    <geom name="floor" type="plane" size="100 100 0.2" condim="3" friction="1 0.005 0.0001" material="floor"/>
    <camera name="track" pos="3 0 1" xyaxes="0 1 0 -0.2 0 1" fovy="{_f(o.camera_fovy)}"/>
{_body_xml(0, 2, o)}{o.scene_worldbody}  </worldbody>
  <actuator>
{chr(10).join(actuators)}
  </actuator>
</mujoco>
"""


def load_model(options: ModelOptions | None = None) -> mujoco.MjModel:
    """Compile the humanoid MJCF into a `mujoco.MjModel`."""
    import mujoco

    return mujoco.MjModel.from_xml_string(humanoid_xml(options))


def write_xml(path: Path = XML_PATH) -> Path:
    """Write the default MJCF (the checked-in `humanoid.xml`)."""
    path.write_text(humanoid_xml())
    return path
