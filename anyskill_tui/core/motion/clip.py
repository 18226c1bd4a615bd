"""Motion clips: the `Clip` dataclass and poselib-style `.npy` read/write (spec §2.1).

A clip file is `np.save` of an OrderedDict (a pickle inside a 0-d object array)::

    rotation                {arr: (T, 15, 4) float32 xyzw, context: {dtype: float32}}   local if is_local
    root_translation        {arr: (T, 3), context}                                      world pelvis origin
    global_velocity         {arr: (T, 15, 3), context}                                  world, per body
    global_angular_velocity {arr: (T, 15, 3), context}
    skeleton_tree           {node_names: [15 str], parent_indices: {arr, context}, local_translation: {arr, context}}
    is_local                bool
    fps                     int
    __name__                "SkeletonMotion"
    position                (T, 15, 3), optional: AnySkill's export format (is_local False); ignored on read

Security: clip files are pickles, and unpickling runs code. `read_clip` never calls `np.load(allow_pickle=True)`:
it parses the `.npy` header with numpy's format reader and unpickles the payload with `_ClipUnpickler`, which
admits only the handful of classes the format uses (OrderedDict, numpy arrays/dtypes/scalars) and refuses
anything else before it is constructed.

Conventions: quaternions xyzw; `Clip` holds numpy float32 arrays (the file format's precision) with *local*
rotations (the root's is global); every problem with a file raises `ClipError` naming the file, the problem
and the fix.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anyskill_tui.core.character import tables as T

__all__ = [
    "Clip",
    "ClipError",
    "read_clip",
    "write_clip",
    "compute_velocities",
    "gaussian_filter1d",
    "QUAT_TOLERANCE",
]

#: how far from 1 a stored quaternion's norm may be
QUAT_TOLERANCE = 1e-3
#: bone offsets in the file may differ from the character's by this much (m)
OFFSET_TOLERANCE = 1e-3


class ClipError(ValueError):
    """A motion clip file could not be used; the message names the file, the problem and the fix."""

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = Path(path) if path is not None else None
        self.message = message
        prefix = f"{self.path}: " if self.path is not None else ""
        super().__init__(prefix + message)


@dataclass
class Clip:
    """One motion clip of the 15-body character (numpy, float32).

    local_rot: (T, 15, 4) xyzw local rotations (root: global); root_pos: (T, 3) world pelvis origin;
    fps: frames per second (> 0); name: a label (the file stem when read);
    global_vel / global_angvel: optional (T, 15, 3) world body velocities as stored in the file.
    """

    local_rot: np.ndarray
    root_pos: np.ndarray
    fps: float
    name: str = "clip"
    global_vel: np.ndarray | None = None
    global_angvel: np.ndarray | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.local_rot = np.asarray(self.local_rot, dtype=np.float32)
        self.root_pos = np.asarray(self.root_pos, dtype=np.float32)
        if self.global_vel is not None:
            self.global_vel = np.asarray(self.global_vel, dtype=np.float32)
        if self.global_angvel is not None:
            self.global_angvel = np.asarray(self.global_angvel, dtype=np.float32)
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.local_rot.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds, (T - 1) / fps (MotionLib's clip length)."""
        return (self.num_frames - 1) / self.fps

    def global_rot(self) -> np.ndarray:
        """(T, 15, 4) global body rotations (float64)."""
        return _fk(self.root_pos, self.local_rot)[1]

    def body_pos(self) -> np.ndarray:
        """(T, 15, 3) world body origins from forward kinematics (float64)."""
        return _fk(self.root_pos, self.local_rot)[0]

    def validate(self, path: str | os.PathLike | None = None) -> Clip:
        """Raise `ClipError` when shapes, values or fps are unusable; returns self."""
        _validate_arrays(path, self.local_rot, self.root_pos, self.fps)
        for key, arr in (("global_velocity", self.global_vel), ("global_angular_velocity", self.global_angvel)):
            if arr is not None:
                if arr.shape != (self.num_frames, T.NUM_BODIES, 3):
                    raise ClipError(
                        path,
                        f"{key} has shape {arr.shape}, expected ({self.num_frames}, {T.NUM_BODIES}, 3). "
                        "Re-export the clip, or drop the field so it is recomputed.",
                    )
                _check_finite(path, key, arr)
        return self


def _fk(root_pos: np.ndarray, local_rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from anyskill_tui.core.motion.fk import forward_kinematics

    pos, rot = forward_kinematics(
        torch.as_tensor(np.asarray(root_pos, dtype=np.float64)),
        torch.as_tensor(np.asarray(local_rot, dtype=np.float64)),
    )
    return pos.numpy(), rot.numpy()


# ---------------------------------------------------------------------------------------------------------
# validation


def _check_finite(path, key: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ClipError(
            path,
            f"{key} contains NaN or inf ({int(bad.sum())} values; first at index {tuple(int(i) for i in idx)}). "
            "Fix or re-export the clip; NaN usually comes from a failed retarget or a zero-length quaternion.",
        )


def _validate_arrays(path, local_rot: np.ndarray, root_pos: np.ndarray, fps) -> None:
    if fps is None:
        raise ClipError(path, "fps is missing. Re-export the clip as a SkeletonMotion with an fps (e.g. 30).")
    try:
        fps_f = float(fps)
    except (TypeError, ValueError):
        raise ClipError(path, f"fps is {fps!r}, not a number. Set fps to the frame rate, e.g. 30.") from None
    if not math.isfinite(fps_f) or fps_f <= 0:
        raise ClipError(path, f"fps is {fps!r}; it must be a positive number. Set fps to the frame rate, e.g. 30.")
    if local_rot.ndim != 3 or local_rot.shape[2] != 4:
        raise ClipError(
            path, f"rotation has shape {local_rot.shape}, expected (T, {T.NUM_BODIES}, 4) xyzw quaternions."
        )
    if local_rot.shape[0] == 0:
        raise ClipError(path, "the clip is empty (0 frames). Export at least one frame (two for velocities).")
    if local_rot.shape[1] != T.NUM_BODIES:
        raise ClipError(
            path,
            f"the clip has {local_rot.shape[1]} bodies, the character has {T.NUM_BODIES}: "
            f"{', '.join(T.BODY_NAMES)}. Retarget the motion to the AMP humanoid.",
        )
    if root_pos.shape != (local_rot.shape[0], 3):
        raise ClipError(
            path, f"root_translation has shape {root_pos.shape}, expected ({local_rot.shape[0]}, 3) to match rotation."
        )
    _check_finite(path, "rotation", local_rot)
    _check_finite(path, "root_translation", root_pos)
    norms = np.linalg.norm(local_rot.astype(np.float64), axis=-1)
    off = np.abs(norms - 1.0)
    if (off > QUAT_TOLERANCE).any():
        f, b = (int(i) for i in np.unravel_index(int(np.argmax(off)), off.shape))
        raise ClipError(
            path,
            f"rotation is not a unit quaternion at frame {f}, body {b} ({T.BODY_NAMES[b]}): norm {norms[f, b]:.6f} "
            f"({int((off > QUAT_TOLERANCE).sum())} quaternions off by more than {QUAT_TOLERANCE}). "
            "Normalise the quaternions (xyzw) before saving.",
        )


# ---------------------------------------------------------------------------------------------------------
# restricted unpickling


def _np_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> dict[tuple[str, str], object]:
    ma = _np_multiarray()
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    # dtype classes numpy 2 may pickle by name (numpy.dtypes.Float32DType etc.)
    try:
        import numpy.dtypes as npd

        for name in dir(npd):
            if name.endswith("DType") and name not in ("ObjectDType", "StringDType"):
                allowed[("numpy.dtypes", name)] = getattr(npd, name)
    except ImportError:  # pragma: no cover
        pass
    return allowed


class _ClipUnpickler(pickle.Unpickler):
    """Unpickler that constructs only plain containers and numpy arrays; anything else raises ClipError."""

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        obj = self._allowed.get((module, name))
        if obj is None:
            raise ClipError(
                self._path,
                f"refuses to load: the pickle asks for {module}.{name}, which a motion clip never contains. "
                "Only load clip files from sources you trust; re-export the motion with anyskill or poselib.",
            )
        return obj

    def persistent_load(self, pid):
        raise ClipError(self._path, "refuses to load: the pickle uses persistent ids, which a motion clip never has.")


def _read_npy_object(path: Path):
    """The payload of a .npy file: the unpickled object of a 0-d object array, or raise ClipError."""
    if not path.exists():
        raise ClipError(path, "file not found. Check the path (relative paths are relative to the current folder).")
    if not path.is_file():
        raise ClipError(path, "is not a file. Give the path of a .npy motion clip.")
    with path.open("rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as e:
            raise ClipError(
                path, f"is not a readable NumPy .npy file ({e}). A motion clip is a poselib SkeletonMotion .npy."
            ) from None
        if not dtype.hasobject:
            raise ClipError(
                path,
                f"holds a plain numeric array (shape {shape}, dtype {dtype}), not a motion dict. A motion clip is "
                "a poselib SkeletonMotion saved with np.save (an OrderedDict with rotation, root_translation, fps...).",
            )
        payload = f.read()
    try:
        arr = _ClipUnpickler(io.BytesIO(payload), path).load()
    except ClipError:
        raise
    except Exception as e:  # truncated or corrupt pickles raise many types
        raise ClipError(
            path, f"the pickled payload is corrupt ({type(e).__name__}: {e}). Re-export the clip."
        ) from None
    if isinstance(arr, np.ndarray) and arr.dtype.hasobject and arr.shape == ():
        return arr.item()
    return arr


def _unwrap(value):
    """poselib wraps arrays as {"arr": ndarray, "context": {...}}."""
    if isinstance(value, dict) and "arr" in value:
        return value["arr"]
    return value


# ---------------------------------------------------------------------------------------------------------
# reading


def read_clip(path: str | os.PathLike) -> Clip:
    """Read a poselib-style `.npy` motion clip (local or global rotations) into a validated `Clip`.

    Raises `ClipError` for a missing file, a non-clip file, a refused pickle, wrong body count/names, NaN/inf,
    non-unit quaternions, a missing or non-positive fps, or an empty clip.
    """
    path = Path(path)
    data = _read_npy_object(path)
    if not isinstance(data, dict):
        raise ClipError(
            path, f"holds a {type(data).__name__}, not a motion dict. A motion clip is a poselib SkeletonMotion .npy."
        )
    kind = data.get("__name__")
    missing = [k for k in ("rotation", "root_translation", "skeleton_tree") if k not in data]
    if missing:
        raise ClipError(
            path,
            f"is missing {', '.join(missing)}. A motion clip is a poselib SkeletonMotion (found keys: "
            f"{', '.join(map(str, data.keys()))}).",
        )
    if kind == "SkeletonState" or "fps" not in data:
        what = "a single pose (SkeletonState)" if kind == "SkeletonState" else "a file without fps"
        raise ClipError(
            path, f"fps is missing: this is {what}, not a motion. Save a SkeletonMotion with an fps (e.g. 30)."
        )
    tree = data["skeleton_tree"]
    if not isinstance(tree, dict) or "node_names" not in tree:
        raise ClipError(path, "skeleton_tree has no node_names. Re-export the clip with poselib or anyskill.")
    names = [str(n) for n in tree["node_names"]]
    if tuple(names) != T.BODY_NAMES:
        raise ClipError(
            path,
            f"the skeleton's bodies are {names} ({len(names)}), expected the AMP humanoid's {T.NUM_BODIES} bodies "
            f"in this order: {', '.join(T.BODY_NAMES)}. Retarget the motion to the AMP humanoid.",
        )
    if "parent_indices" in tree:
        parents = np.asarray(_unwrap(tree["parent_indices"])).astype(np.int64).reshape(-1)
        if tuple(int(p) for p in parents) != T.PARENT_INDICES:
            raise ClipError(
                path,
                f"skeleton parent_indices are {parents.tolist()}, expected {list(T.PARENT_INDICES)}. "
                "Retarget the motion to the AMP humanoid.",
            )
    if "local_translation" in tree:
        lt = np.asarray(_unwrap(tree["local_translation"]), dtype=np.float64)
        if lt.shape != (T.NUM_BODIES, 3) or np.abs(lt[1:] - T.LOCAL_TRANSLATION[1:]).max() > OFFSET_TOLERANCE:
            raise ClipError(
                path,
                "the skeleton's bone offsets (local_translation) differ from the AMP humanoid's by more than "
                f"{OFFSET_TOLERANCE} m. Retarget the motion to the AMP humanoid's proportions.",
            )
    try:
        rot = np.asarray(_unwrap(data["rotation"]), dtype=np.float32)
        root = np.asarray(_unwrap(data["root_translation"]), dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ClipError(path, f"rotation/root_translation are not numeric arrays ({e}). Re-export the clip.") from None
    fps = data.get("fps")
    if isinstance(fps, np.ndarray):
        fps = fps.item() if fps.size == 1 else None
    _validate_arrays(path, rot, root, fps)
    is_local = bool(data.get("is_local", True))
    if not is_local:
        rot = _global_to_local_np(rot)
    vel = _optional_body_array(path, data, "global_velocity", rot.shape[0])
    angvel = _optional_body_array(path, data, "global_angular_velocity", rot.shape[0])
    return Clip(rot, root, float(fps), path.stem, vel, angvel, source=path)


def _optional_body_array(path, data: dict, key: str, num_frames: int) -> np.ndarray | None:
    if key not in data or data[key] is None:
        return None
    arr = np.asarray(_unwrap(data[key]), dtype=np.float32)
    if arr.shape != (num_frames, T.NUM_BODIES, 3):
        raise ClipError(
            path,
            f"{key} has shape {arr.shape}, expected ({num_frames}, {T.NUM_BODIES}, 3). Re-export the clip.",
        )
    _check_finite(path, key, arr)
    return arr


def _global_to_local_np(rot: np.ndarray) -> np.ndarray:
    import torch

    from anyskill_tui.core.motion.fk import global_to_local_rot

    return global_to_local_rot(torch.as_tensor(rot.astype(np.float64))).numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# velocities (as poselib computes them) and writing


def gaussian_filter1d(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """1-D Gaussian filter along `axis`, mode "nearest", truncate 4 sigma (scipy.ndimage.gaussian_filter1d)."""
    radius = int(4.0 * sigma + 0.5)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w /= w.sum()
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    n = x.shape[0]
    idx = np.clip(np.arange(n)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, n - 1)  # (n, 2r+1)
    out = np.tensordot(x[idx], w, axes=([1], [0])) if x.ndim == 1 else np.einsum("nk...,k->n...", x[idx], w)
    return np.moveaxis(out, 0, axis)


def compute_velocities(clip: Clip, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """World body linear and angular velocities (T, 15, 3) as poselib's `from_skeleton_state` computes them.

    linear: np.gradient of FK body positions over time / dt, Gaussian-filtered (σ = 2 frames, "nearest");
    angular: axis·angle / dt of q_{t+1} ⊗ q_t⁻¹ on global rotations (last frame zero), same filter.
    A one-frame clip gets zero velocities.
    """
    num = clip.num_frames
    if num < 2:
        z = np.zeros((num, T.NUM_BODIES, 3), dtype=np.float32)
        return z, z.copy()
    import torch

    from anyskill_tui.core.motion.quat import quat_conjugate, quat_mul, quat_to_axis_angle

    pos, rot = _fk(clip.root_pos, clip.local_rot)
    dt = 1.0 / clip.fps
    vel = np.gradient(pos, axis=0) / dt
    r = torch.as_tensor(rot)
    diff = torch.zeros_like(r)
    diff[..., 3] = 1.0
    diff[:-1] = quat_mul(r[1:], quat_conjugate(r[:-1]))
    axis, angle = quat_to_axis_angle(diff)
    angvel = (axis * angle.unsqueeze(-1)).numpy() / dt
    vel = gaussian_filter1d(vel, sigma, axis=0)
    angvel = gaussian_filter1d(angvel, sigma, axis=0)
    return vel.astype(np.float32), angvel.astype(np.float32)


def _wrap(arr: np.ndarray, dtype) -> dict:
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return {"arr": arr, "context": {"dtype": np.dtype(dtype).name}}


def write_clip(path: str | os.PathLike, clip: Clip, is_local: bool = True, recompute_velocities: bool = True) -> Path:
    """Write `clip` as a poselib SkeletonMotion `.npy` (validated first); returns the path.

    is_local True (default) stores local rotations; False stores global rotations plus the extra `position`
    (T, 15, 3) key, as AnySkill's motion export does. Velocities are recomputed as poselib does
    (`compute_velocities`) unless recompute_velocities is False and the clip carries them. The file is written
    atomically (temporary file + rename).
    """
    path = Path(path)
    clip.validate(path)
    if recompute_velocities or clip.global_vel is None or clip.global_angvel is None:
        vel, angvel = compute_velocities(clip)
    else:
        vel, angvel = clip.global_vel, clip.global_angvel
    rot = clip.local_rot if is_local else clip.global_rot()
    fps = int(clip.fps) if float(clip.fps).is_integer() else float(clip.fps)
    data = collections.OrderedDict()
    data["rotation"] = _wrap(rot, np.float32)
    data["root_translation"] = _wrap(clip.root_pos, np.float32)
    data["global_velocity"] = _wrap(vel, np.float32)
    data["global_angular_velocity"] = _wrap(angvel, np.float32)
    data["skeleton_tree"] = collections.OrderedDict(
        node_names=list(T.BODY_NAMES),
        parent_indices=_wrap(np.array(T.PARENT_INDICES), np.int64),
        local_translation=_wrap(T.LOCAL_TRANSLATION, np.float32),
    )
    data["is_local"] = bool(is_local)
    data["fps"] = fps
    data["__name__"] = "SkeletonMotion"
    if not is_local:
        data["position"] = clip.body_pos().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    obj = np.empty((), dtype=object)
    obj[()] = data
    with tmp.open("wb") as f:
        np.save(f, obj, allow_pickle=True)
    os.replace(tmp, path)
    return path
