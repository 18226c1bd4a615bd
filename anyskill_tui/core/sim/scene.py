"""Scenes: rigid and articulated objects beside the character (spec §6), described in ``configs/scenes/*.yaml``.

A scene is a list of bodies built from primitives (boxes, capsules, cylinders, spheres), each with a pose, a mass
or density, an optional joint (``free``: a rigid object; ``hinge``/``slide``: an articulated part, with limits
and damping; none: welded to its parent, or static at the top level) and child bodies. Poses are in the world
frame of each env, where the character starts (the default state) at the origin facing +x; its right side is −y.

How a scene enters the simulation (both engines):

- :func:`scene_xml` writes the bodies as MJCF; :func:`scene_model_options` puts it into
  ``character.model.ModelOptions.scene_worldbody``, which the generated model inserts into ``<worldbody>`` AFTER
  the character. So the character keeps MuJoCo body ids 1..15 and qpos[:35] / qvel[:34]; the objects' joints
  follow in qpos/qvel (a free joint: position + wxyz quaternion, 7 / 6; a hinge or slide: 1 / 1), and their
  bodies are ids 16.. in the depth-first order of the file (:meth:`SceneConfig.flat_bodies`).
  ``make_backend(..., model_options=scene_model_options(scene))`` builds either engine with it.
- The object's start state is the model's ``qpos0`` (the poses of the file, hinges at 0) with zero velocity;
  ``HumanoidEnv`` writes it on every episode start.
- Names in the model are prefixed (``obj_<body>``, ``obj_<body>_<geom>``, ``obj_<body>_joint``), so they never
  clash with the character's.

The HLC may observe the moving objects (``network.object_obs`` in ``configs/skill.yaml``; the reference did
not, spec §6): :func:`object_observation` gives, per body with a joint, its position relative to the root and its
x and z axes, all in the root's heading frame (9 numbers, as the character's own observation encodes bodies).

This module imports only pydantic/yaml at module level (the CLI validates scenes cheaply); torch inside
:func:`object_observation` only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from anyskill_tui.core.learn.config import ConfigError, ConfigSection, read_yaml_config, validate_config
from anyskill_tui.errors import UserError
from anyskill_tui.paths import configs_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from anyskill_tui.core.character.model import ModelOptions

__all__ = [
    "OBJECT_OBS_PER_BODY",
    "SceneBody",
    "SceneConfig",
    "SceneGeom",
    "SceneJoint",
    "available_scenes",
    "load_scene",
    "object_observation",
    "resolve_scene",
    "scene_from_dict",
    "scene_model_options",
    "scene_xml",
    "scenes_dir",
]

#: numbers per moving object body in the HLC's object observation: root-relative position, x axis, z axis
OBJECT_OBS_PER_BODY = 9
#: MuJoCo names of scene bodies are this prefix + the scene's body name
NAME_PREFIX = "obj_"

Vec3 = tuple[float, float, float]
Rgba = tuple[
    Annotated[float, Field(ge=0.0, le=1.0)],
    Annotated[float, Field(ge=0.0, le=1.0)],
    Annotated[float, Field(ge=0.0, le=1.0)],
    Annotated[float, Field(ge=0.0, le=1.0)],
]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SIZE_COUNT = {"box": 3, "sphere": 1, "capsule": 2, "cylinder": 2}


def _check_name(v: str | None) -> str | None:
    if v is not None and not _NAME.match(v):
        raise ValueError(f"{v!r} is not a name: use letters, digits and _ (starting with a letter)")
    return v


class SceneGeom(ConfigSection):
    """One primitive of a body, in the body frame. Sizes are MuJoCo's half-sizes (m): box (x, y, z), sphere
    (radius), capsule / cylinder (radius, half-length along the geom's z; or (radius) with ``fromto``)."""

    name: str | None = None
    type: Literal["box", "sphere", "capsule", "cylinder"]
    size: tuple[Annotated[float, Field(gt=0.0)], ...]
    pos: Vec3 = (0.0, 0.0, 0.0)
    euler_deg: Vec3 = Field((0.0, 0.0, 0.0), description="intrinsic x-y-z rotation (degrees)")
    fromto: tuple[float, float, float, float, float, float] | None = Field(
        None, description="capsule/cylinder from one end point to the other (replaces pos, euler and half-length)"
    )
    rgba: Rgba | None = Field(None, description="colour (default: the body's)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return _check_name(v)

    @model_validator(mode="after")
    def _sizes(self) -> SceneGeom:
        want = _SIZE_COUNT[self.type]
        if self.fromto is not None:
            if self.type not in ("capsule", "cylinder"):
                raise ValueError("fromto: only capsules and cylinders take fromto")
            want = 1
            a, b = self.fromto[:3], self.fromto[3:]
            if math.dist(a, b) <= 0.0:
                raise ValueError("fromto: the two end points must differ")
        if len(self.size) != want:
            raise ValueError(f"size: a {self.type}{' with fromto' if self.fromto else ''} takes {want} number(s)")
        return self

    def volume(self) -> float:
        """m^3 of the primitive (what MuJoCo's mass from density uses)."""
        s = self.size
        if self.type == "box":
            return 8.0 * s[0] * s[1] * s[2]
        if self.type == "sphere":
            return 4.0 / 3.0 * math.pi * s[0] ** 3
        r = s[0]
        half = math.dist(self.fromto[:3], self.fromto[3:]) / 2.0 if self.fromto is not None else s[1]
        v = math.pi * r * r * 2.0 * half
        return v + 4.0 / 3.0 * math.pi * r**3 if self.type == "capsule" else v


class SceneJoint(ConfigSection):
    """How a body moves relative to its parent: ``free`` (a rigid object, top-level bodies only), ``hinge``
    (rotation about ``axis`` through ``pos``; range in degrees) or ``slide`` (along ``axis``; range in m)."""

    type: Literal["free", "hinge", "slide"]
    axis: Vec3 = (0.0, 0.0, 1.0)
    pos: Vec3 = Field((0.0, 0.0, 0.0), description="in the body frame")
    range: tuple[float, float] | None = Field(None, description="limits: degrees (hinge) or m (slide); null: none")
    damping: float = Field(0.0, ge=0.0, description="viscous damping (N·m·s/rad or N·s/m; free: every DoF)")
    frictionloss: float = Field(0.0, ge=0.0, description="dry friction (N·m or N)")
    armature: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> SceneJoint:
        if self.type == "free" and (self.range is not None or self.frictionloss > 0.0):
            raise ValueError("range: a free joint takes neither range nor frictionloss (only damping)")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range: the lower limit must be below the upper one")
        if self.type != "free" and math.hypot(*self.axis) <= 0.0:
            raise ValueError("axis: must not be zero")
        return self


class SceneBody(ConfigSection):
    """A body of the scene: pose (in its parent's frame; the world for top-level bodies), joint, mass, geoms and
    child bodies."""

    name: str
    pos: Vec3 = (0.0, 0.0, 0.0)
    euler_deg: Vec3 = Field((0.0, 0.0, 0.0), description="intrinsic x-y-z rotation (degrees)")
    joint: SceneJoint | None = Field(None, description="null: welded to the parent (top level: static)")
    mass: float | None = Field(None, gt=0.0, description="kg of this body's geoms (overrides density)")
    density: float = Field(1000.0, gt=0.0, description="kg/m^3 of the geoms when no mass is given")
    rgba: Rgba = (0.85, 0.85, 0.85, 1.0)
    friction: tuple[Annotated[float, Field(ge=0.0)], ...] = Field(
        (1.0, 0.005, 0.0001), min_length=1, max_length=3, description="sliding, torsional, rolling"
    )
    geoms: tuple[SceneGeom, ...] = ()
    bodies: tuple[SceneBody, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return _check_name(v)

    @model_validator(mode="after")
    def _check(self) -> SceneBody:
        if self.joint is not None and not self.geoms and not self.bodies:
            raise ValueError("geoms: a body with a joint needs geoms (its mass comes from them)")
        if self.mass is not None and not self.geoms:
            raise ValueError("mass: a body without geoms has no mass to set")
        for child in self.bodies:
            if child.joint is not None and child.joint.type == "free":
                raise ValueError(f"bodies: {child.name}: a free joint only goes on a top-level body")
        names = [g.name for g in self.geoms if g.name is not None]
        if len(names) != len(set(names)):
            raise ValueError("geoms: geom names must be unique within a body")
        return self

    def geom_density(self) -> float:
        """The density of this body's geoms: ``mass / total volume`` when a mass is given, else ``density``."""
        if self.mass is None:
            return self.density
        return self.mass / sum(g.volume() for g in self.geoms)


class SceneConfig(ConfigSection):
    """A scene (``configs/scenes/NAME.yaml``): its bodies and, for people, a description and example prompts."""

    name: str
    description: str = ""
    prompts: tuple[str, ...] = Field((), description="example prompts for this scene")
    bodies: tuple[SceneBody, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return _check_name(v)

    @model_validator(mode="after")
    def _unique(self) -> SceneConfig:
        names = [b.name for b in self.flat_bodies()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"bodies: body names must be unique in a scene ({', '.join(dup)} repeated)")
        return self

    def flat_bodies(self) -> list[SceneBody]:
        """Every body, depth first in file order: the order of their MuJoCo body ids (16, 17, ...)."""

        def walk(bodies: tuple[SceneBody, ...]) -> Iterator[SceneBody]:
            for b in bodies:
                yield b
                yield from walk(b.bodies)

        return list(walk(self.bodies))

    def moving_body_indices(self) -> list[int]:
        """Indices (into :meth:`flat_bodies`, i.e. ``object_pos[:, i]``) of the bodies with a joint."""
        return [i for i, b in enumerate(self.flat_bodies()) if b.joint is not None]

    @property
    def object_obs_dim(self) -> int:
        """Numbers the HLC's object observation adds (9 per body with a joint)."""
        return OBJECT_OBS_PER_BODY * len(self.moving_body_indices())

    @property
    def nq(self) -> int:
        """qpos entries of the scene's joints (after the character's 35)."""
        return sum({"free": 7, "hinge": 1, "slide": 1}[b.joint.type] for b in self.flat_bodies() if b.joint)

    @property
    def nv(self) -> int:
        """qvel entries of the scene's joints (after the character's 34)."""
        return sum({"free": 6, "hinge": 1, "slide": 1}[b.joint.type] for b in self.flat_bodies() if b.joint)


SceneBody.model_rebuild()


# ------------------------------------------------------------------------------------------------ files


def scenes_dir() -> Path:
    """The shipped scenes: ``configs/scenes/``."""
    return configs_dir() / "scenes"


def available_scenes() -> list[str]:
    """Names of the shipped scenes (``configs/scenes/*.yaml``), sorted."""
    d = scenes_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def scene_from_dict(data: Mapping[str, Any] | None, source: str = "<scene>") -> SceneConfig:
    """Validate plain data (a scene YAML, or a run's stored ``scene``) into a :class:`SceneConfig`; problems are one
    :class:`~anyskill_tui.core.learn.config.ConfigError` naming ``source`` and the key."""
    return validate_config(SceneConfig, data, source)


def load_scene(name_or_path: str | Path) -> SceneConfig:
    """A shipped scene by name (``door``) or a scene YAML file by path; a UserError naming the choices otherwise."""
    text = str(name_or_path).strip()
    p = Path(text).expanduser()
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file() or "/" in text:
        if not p.is_file():
            raise UserError(f"scene file {p} does not exist: give a scene YAML or one of {_choices()}")
        return scene_from_dict(read_yaml_config(p), source=str(p))
    shipped = scenes_dir() / f"{text}.yaml"
    if not _NAME.match(text) or not shipped.is_file():
        raise UserError(f"unknown scene {text!r}: choose one of {_choices()} ({scenes_dir()}) or give a scene YAML")
    return scene_from_dict(read_yaml_config(shipped), source=str(shipped))


def _choices() -> str:
    return ", ".join(available_scenes()) or "(none shipped)"


def resolve_scene(value: Any, source: str = "scene") -> SceneConfig | None:
    """A :class:`SceneConfig` from what configs hold: None (no scene), a name or path (:func:`load_scene`), a
    mapping (a stored resolved scene) or a SceneConfig."""
    if value is None or isinstance(value, SceneConfig):
        return value
    if isinstance(value, str | Path):
        return load_scene(value)
    if isinstance(value, Mapping):
        return scene_from_dict(value, source=source)
    raise ConfigError(f"{source}: expected a scene name, a scene YAML path or a mapping, not {type(value).__name__}")


# ------------------------------------------------------------------------------------------------ MJCF


def _f(v: float) -> str:
    s = f"{v:.7g}"
    return "0" if s == "-0" else s


def _vec(v) -> str:
    return " ".join(_f(float(x)) for x in v)


def _geom_xml(body: SceneBody, k: int, g: SceneGeom, density: float, indent: str) -> str:
    name = f"{NAME_PREFIX}{body.name}_{g.name or f'g{k}'}"
    attrs = [f'name="{name}"', f'type="{g.type}"', f'size="{_vec(g.size)}"']
    if g.fromto is not None:
        attrs.append(f'fromto="{_vec(g.fromto)}"')
    else:
        if any(g.pos):
            attrs.append(f'pos="{_vec(g.pos)}"')
        if any(g.euler_deg):
            attrs.append(f'euler="{_vec(g.euler_deg)}"')
    attrs += [
        f'density="{_f(density)}"',
        f'rgba="{_vec(g.rgba or body.rgba)}"',
        'condim="3"',
        f'friction="{_vec(body.friction)}"',
    ]
    return f"{indent}<geom {' '.join(attrs)}/>\n"


def _joint_xml(body: SceneBody, j: SceneJoint, indent: str) -> str:
    name = f"{NAME_PREFIX}{body.name}_joint"
    if j.type == "free":
        return f'{indent}<joint name="{name}" type="free" damping="{_f(j.damping)}"/>\n'
    attrs = [f'name="{name}"', f'type="{j.type}"', f'axis="{_vec(j.axis)}"']
    if any(j.pos):
        attrs.append(f'pos="{_vec(j.pos)}"')
    if j.range is not None:
        attrs += ['limited="true"', f'range="{_vec(j.range)}"']
    else:
        attrs.append('limited="false"')
    attrs += [f'damping="{_f(j.damping)}"', f'frictionloss="{_f(j.frictionloss)}"', f'armature="{_f(j.armature)}"']
    return f"{indent}<joint {' '.join(attrs)}/>\n"


def _body_xml(body: SceneBody, depth: int) -> str:
    ind = "  " * depth
    attrs = [f'name="{NAME_PREFIX}{body.name}"', f'pos="{_vec(body.pos)}"']
    if any(body.euler_deg):
        attrs.append(f'euler="{_vec(body.euler_deg)}"')
    out = f"{ind}<body {' '.join(attrs)}>\n"
    if body.joint is not None:
        out += _joint_xml(body, body.joint, ind + "  ")
    density = body.geom_density() if body.geoms else body.density
    for k, g in enumerate(body.geoms):
        out += _geom_xml(body, k, g, density, ind + "  ")
    for child in body.bodies:
        out += _body_xml(child, depth + 1)
    return out + f"{ind}</body>\n"


def scene_xml(scene: SceneConfig) -> str:
    """The scene's bodies as MJCF for ``<worldbody>`` (degrees, as the character model's compiler uses)."""
    head = f"    <!-- scene {scene.name!r}: generated by anyskill_tui/core/sim/scene.py -->\n"
    return head + "".join(_body_xml(b, 2) for b in scene.bodies)


def scene_model_options(scene: SceneConfig | None, base: ModelOptions | None = None) -> ModelOptions:
    """``base`` (default ``ModelOptions()``) with the scene's MJCF in ``scene_worldbody`` (unchanged for None)."""
    from anyskill_tui.core.character.model import ModelOptions

    base = base or ModelOptions()
    if scene is None:
        return base
    return dataclasses.replace(base, scene_worldbody=scene_xml(scene))


# ------------------------------------------------------------------------------------------------ observation


def object_observation(
    root_pos: torch.Tensor, root_rot: torch.Tensor, obj_pos: torch.Tensor, obj_rot: torch.Tensor
) -> torch.Tensor:
    """(N, 9·B) object observation: per body, its position relative to the root and its x and z axes, all
    rotated into the root's heading frame (the frame of the character's own 223-d observation).

    root_pos (N, 3), root_rot (N, 4) xyzw; obj_pos (N, B, 3), obj_rot (N, B, 4) xyzw world poses.
    """
    import torch

    from anyskill_tui.core.motion.quat import quat_to_matrix

    n, b = obj_pos.shape[0], obj_pos.shape[1]
    if b == 0:
        return obj_pos.new_zeros((n, 0))
    r0 = quat_to_matrix(root_rot)  # (N, 3, 3)
    hx, hy = r0[:, 0, 0], r0[:, 1, 0]
    hn = torch.sqrt(hx * hx + hy * hy)
    ok = hn > 1e-9
    safe = torch.where(ok, hn, torch.ones_like(hn))
    c = torch.where(ok, hx / safe, torch.ones_like(hx)).view(n, 1, 1)
    s = torch.where(ok, hy / safe, torch.zeros_like(hy)).view(n, 1, 1)
    axes = quat_to_matrix(obj_rot)[..., ::2].transpose(-1, -2)  # (N, B, 2, 3): x axis, z axis
    parts = torch.cat(((obj_pos - root_pos[:, None]).unsqueeze(2), axes), dim=2)  # (N, B, 3, 3)
    px, py, pz = parts.unbind(-1)
    return torch.stack((c * px + s * py, c * py - s * px, pz), dim=-1).reshape(n, b * 9)
