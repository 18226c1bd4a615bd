"""Scenes (core/sim/scene.py, configs/scenes/): objects beside the character, on both engines, in training and
replay.

- the shipped scenes (chair, ball, door) load, validate and compile; bad scenes fail with one message naming the
  file and key; without a scene the model is byte-for-byte the old one, and with one the character's slices of
  qpos/qvel, its bodies and its 223/125-d observations are unchanged;
- cpu engine (HumanoidEnv): a ball rolled at the feet bounces off them, the chair rests on its legs, the door
  leaf stops at its limit, every reset path puts the objects back, contacts with an object do not count as the
  fall test's contact (a fallen character still terminates), the tracking camera's frames show the objects;
- gpu engine (MuJoCo Warp on warp's CPU device, as tests/test_sim_gpu_parity.py): one test scene (a ball rolled at
  the feet, a pedestal under the right hand, a door) stepped beside the cpu engine: same object state, same
  contact and fall-contact flags, objects reset by `set_state`, objects in the ray-traced frames;
- skills: the object observation switch, the rendered CLIP reward path sees the door's angle, a constructed
  learning problem (a scorer of the door's hinge angle through the real SkillTrainer reward path) opens the door,
  the proxy is refused with scenes, and `anyskill train --scene door` records the scene on the run and
  `anyskill replay` rebuilds it.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

mujoco = pytest.importorskip("mujoco")

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.character.model import ModelOptions, humanoid_xml  # noqa: E402
from anyskill_tui.core.learn.config import ConfigError  # noqa: E402
from anyskill_tui.core.sim.backend import CameraSpec  # noqa: E402
from anyskill_tui.core.sim.cpu import CpuBackend, build_model  # noqa: E402
from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv  # noqa: E402
from anyskill_tui.core.sim.scene import (  # noqa: E402
    available_scenes,
    load_scene,
    object_observation,
    scene_from_dict,
    scene_model_options,
)
from anyskill_tui.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_OFF, _SCALE = (torch.as_tensor(x, dtype=torch.float32) for x in T.pd_offset_scale())
#: the action whose PD targets are the zero pose: the character stands
ZERO = (-_OFF / _SCALE).unsqueeze(0)
NQ, NV = 7 + T.NUM_DOFS, 6 + T.NUM_DOFS

#: a test scene with one of each kind: a red ball (free) in front of the right foot, a blue static pedestal
#: whose top is 4 mm above the bottom of the standing character's right hand, and a door (hinge) behind it
MIX = {
    "name": "mix",
    "bodies": [
        {
            "name": "ball",
            "pos": [0.6, -0.085, 0.11],
            "joint": {"type": "free", "damping": 0.01},
            "mass": 0.43,
            "rgba": [0.9, 0.05, 0.05, 1.0],
            "geoms": [{"type": "sphere", "size": [0.11]}],
        },
        {
            "name": "pedestal",
            "pos": [-0.024, -0.21, 0.395],
            "rgba": [0.1, 0.2, 0.95, 1.0],
            "geoms": [{"type": "box", "size": [0.04, 0.025, 0.395]}],
        },
        {
            "name": "frame",
            "pos": [-1.0, 1.0, 0.0],
            "geoms": [{"type": "box", "size": [0.05, 0.05, 1.0], "pos": [0, -0.45, 1.0]}],
            "bodies": [
                {
                    "name": "leaf",
                    "pos": [0, -0.36, 0],
                    "joint": {"type": "hinge", "range": [-100, 100], "damping": 1.0},
                    "mass": 1.0,
                    "rgba": [0.72, 0.52, 0.3, 1.0],
                    "geoms": [{"type": "box", "size": [0.025, 0.36, 0.8], "pos": [0, 0.37, 0.85]}],
                }
            ],
        },
    ],
}
MIX_BALL_Q, MIX_LEAF_Q = NQ, NQ + 7  # qpos columns of the ball's position and the leaf's hinge
MIX_BALL_V, MIX_LEAF_V = NV, NV + 6


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: torch's thread pool only fights MuJoCo's threads on the shared CI cores."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def make_env(scene, n: int = 2, **kw) -> HumanoidEnv:
    base = dict(num_envs=n, engine="cpu", threads=1, state_init="default", fall_init_prob=0.0, seed=0, scene=scene)
    base.update(kw)
    return HumanoidEnv(EnvConfig(**base))


def stand(env: HumanoidEnv, steps: int):
    res = None
    for _ in range(steps):
        res = env.step(ZERO.expand(env.num_envs, -1))
    return res


# ------------------------------------------------------------------------------------------------ files, model


def test_shipped_scenes_load_and_compile_after_the_character():
    assert available_scenes() == ["ball", "chair", "door"]
    plain = build_model()
    masses = {"ball": [0.43], "chair": [4.0], "door": [None, 1.0]}
    for name in available_scenes():
        s = load_scene(name)
        assert s.name == name and s.prompts
        m = build_model(scene_model_options(s))
        assert (m.nq, m.nv) == (NQ + s.nq, NV + s.nv)
        assert m.nbody == 16 + len(s.flat_bodies())
        # the character is untouched: bodies 1..15, its qpos0 and masses; objects come after it
        assert [m.body(i).name for i in range(16)] == [plain.body(i).name for i in range(16)]
        np.testing.assert_array_equal(m.qpos0[:NQ], plain.qpos0)
        np.testing.assert_array_equal(m.body_mass[:16], plain.body_mass)
        assert [m.body(16 + i).name for i in range(len(s.flat_bodies()))] == [f"obj_{b.name}" for b in s.flat_bodies()]
        for i, want in enumerate(masses[name]):
            if want is not None:
                assert m.body_mass[16 + i] == pytest.approx(want)
    door = build_model(scene_model_options(load_scene("door")))
    j = mujoco.mj_name2id(door, mujoco.mjtObj.mjOBJ_JOINT, "obj_door_leaf_joint")
    assert door.jnt_limited[j] and np.allclose(np.degrees(door.jnt_range[j]), [-100, 100])
    assert door.dof_damping[door.jnt_dofadr[j]] == 1.0


def test_no_scene_model_is_unchanged():
    assert scene_model_options(None) == ModelOptions()
    assert humanoid_xml(scene_model_options(None)) == humanoid_xml()
    assert build_model().nsensor == T.NUM_BODIES  # the fall-contact sensors come only with a scene
    env = make_env(None, n=1)
    assert env.scene is None and env.object_pos.shape == (1, 0, 3) and env.backend.qpos.shape == (1, NQ)
    assert env.backend.body_fall_contact is env.backend.body_contact


def test_scene_character_observations_equal_the_plain_env():
    plain, door = make_env(None), make_env("door")
    assert door.obs.shape == (2, 223) and door.amp_obs.shape == (2, 125)
    torch.testing.assert_close(door.obs, plain.obs, atol=0, rtol=0)
    torch.testing.assert_close(door.amp_obs, plain.amp_obs, atol=0, rtol=0)
    torch.testing.assert_close(door.backend.qpos[:, :NQ], plain.backend.qpos, atol=0, rtol=0)


def test_bad_scenes_fail_with_one_clear_message(tmp_path):
    with pytest.raises(UserError, match=r"unknown scene 'sofa': choose one of ball, chair, door"):
        load_scene("sofa")
    with pytest.raises(UserError, match=r"scene file .*missing.yaml does not exist"):
        load_scene(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    cases = [
        ("name: x\nbodies: []\n", "bodies"),
        ("name: x\nbodies:\n  - {name: a, geoms: [{type: box, size: [1, 1]}]}\n", "size: a box takes 3"),
        ("name: x\nbodies:\n  - {name: a, joint: {type: free}}\n", "a body with a joint needs geoms"),
        (
            "name: x\nbodies:\n  - name: a\n    geoms: [{type: sphere, size: [0.1]}]\n    bodies:\n"
            "      - {name: b, joint: {type: free}, geoms: [{type: sphere, size: [0.1]}]}\n",
            "a free joint only goes on a top-level body",
        ),
        (
            "name: x\nbodies:\n  - {name: a, geoms: [{type: sphere, size: [0.1]}]}\n"
            "  - {name: a, geoms: [{type: sphere, size: [0.1]}]}\n",
            "body names must be unique",
        ),
        ("name: x\nbodies:\n  - {name: a, colour: red, geoms: [{type: sphere, size: [0.1]}]}\n", "unknown key"),
        (
            "name: x\nbodies:\n  - name: a\n    joint: {type: hinge, range: [10, -10]}\n"
            "    geoms: [{type: sphere, size: [0.1]}]\n",
            "lower limit must be below",
        ),
    ]
    for text, want in cases:
        bad.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_scene(bad)
        msg = str(e.value)
        assert msg.startswith(str(bad)) and want in msg and "\n" not in msg, msg


def test_object_observation_is_root_relative_in_the_heading_frame():
    root = torch.tensor([[1.0, 2.0, 0.9]])
    yaw = math.pi / 2  # the character faces +y
    root_rot = torch.tensor([[0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)]])
    obj_pos = torch.tensor([[[1.0, 3.0, 0.2]]])  # 1 m in front of it
    obj_rot = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]])  # world-aligned
    o = object_observation(root, root_rot, obj_pos, obj_rot)
    assert o.shape == (1, 9)
    torch.testing.assert_close(o[0, :3], torch.tensor([1.0, 0.0, -0.7]))  # ahead, at -0.7 m
    torch.testing.assert_close(o[0, 3:6], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6, rtol=0)  # world x: its right
    torch.testing.assert_close(o[0, 6:], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ cpu engine


def test_ball_bounces_off_the_feet_and_every_reset_puts_it_back():
    env = make_env(MIX)
    q, v = env.backend.qpos.clone(), torch.zeros_like(env.backend.qvel)
    v[:, MIX_BALL_V] = -3.0  # rolled at the right foot; without a collision it would be at x = -0.9 after 0.5 s
    env.backend.set_state(torch.arange(2), q, v)
    xs = []
    for _ in range(15):
        env.step(ZERO.expand(2, -1))
        xs.append(float(env.object_qpos[0, 0]))
    assert min(xs) > 0.1, xs  # stopped by the foot (toes at x = 0.13, ball radius 0.11)
    assert float(env.backend.qvel[0, MIX_BALL_V]) > -0.5  # and no longer rolling in
    start = env._object_qpos0
    assert not torch.allclose(env.object_qpos[0], start)
    env.reset()  # every env, ordinary episode start
    torch.testing.assert_close(env.object_qpos, start.expand(2, -1))
    assert float(env.backend.qvel[:, NV:].abs().max()) == 0.0
    for reset in ("reset_done", "reset_done_masked"):
        env.backend.set_state(torch.arange(2), q, v)
        env.step(ZERO.expand(2, -1))
        moved = env.object_qpos.clone()
        env.truncated = torch.tensor([True, False])  # env 0's episode ends
        getattr(env, reset)()
        torch.testing.assert_close(env.object_qpos[0], start)
        torch.testing.assert_close(env.object_qpos[1], moved[1])  # env 1 runs on
        assert float(env.backend.qvel[0, NV:].abs().max()) == 0.0


def test_chair_rests_on_its_legs_and_the_door_stops_at_its_limit():
    env = make_env("chair", n=1)
    start = env.object_qpos.clone()
    stand(env, 30)
    torch.testing.assert_close(env.object_qpos, start, atol=2e-3, rtol=0)  # still standing where it was
    assert float(env.object_pos[0, 0, 2]) > -1e-3
    door = make_env("door", n=1)
    q, v = door.backend.qpos.clone(), torch.zeros_like(door.backend.qvel)
    v[:, NV] = -12.0  # flung open (rad/s): damping 1 alone would stop it after about 2 rad
    door.backend.set_state(torch.arange(1), q, v)
    angles = []
    for _ in range(30):
        door.step(ZERO)
        angles.append(float(door.object_qpos[0, 0]))
    assert min(angles) > math.radians(-100) - 0.05  # the limit holds (soft: a few hundredths)
    assert min(angles) < math.radians(-95)  # it swung up to the limit
    assert abs(float(door.backend.qvel[0, NV])) < 1.0  # damped / stopped


def test_object_contacts_are_not_fall_contacts():
    """Termination height 1 m: the pelvis is always "low", so the fall test hinges on the contact term alone."""
    env = make_env(MIX, n=1, termination_height=1.0)
    res = stand(env, 10)
    hand = T.BODY_INDEX["right_hand"]
    b = env.backend
    assert bool(b.body_contact[0, hand]) and not bool(b.body_fall_contact[0, hand])  # on the pedestal
    nonfoot = torch.ones(T.NUM_BODIES, dtype=torch.bool)
    nonfoot[list(T.CONTACT_BODY_IDS)] = False
    assert bool((b.body_contact[0] & nonfoot).any())  # the old rule would call this a fall...
    assert not bool(res.terminated[0]) and not bool(env.fall_check()[0])  # ...the scene-aware one does not
    # a character lying on the floor beside the objects still falls
    q = b.qpos.clone()
    q[:, :3] = torch.tensor([0.0, 0.6, 0.115])
    q[:, 3:7] = torch.tensor([math.cos(-math.pi / 4), 0.0, math.sin(-math.pi / 4), 0.0])
    q[:, 7:NQ] = 0.0
    lying = make_env(MIX, n=1)
    lying.backend.set_state(torch.arange(1), q, torch.zeros_like(b.qvel))
    res = stand(lying, 3)
    assert bool(res.terminated[0]) and bool(lying.backend.body_fall_contact[0].any())


def _pixels(frames: torch.Tensor, rgb) -> torch.Tensor:
    """(N,) count of pixels within 0.2 of the colour `rgb` (each channel)."""
    c = torch.tensor(rgb, dtype=frames.dtype).view(1, 3, 1, 1)
    return ((frames - c).abs() < 0.2).all(1).flatten(1).sum(-1)


def test_cpu_frames_show_the_objects():
    cam = CameraSpec(width=64, height=64)
    plain = make_env(None, n=1).render(cam)
    chair = make_env("chair", n=1).render(cam)
    white = (0.93, 0.93, 0.9)
    assert int(_pixels(plain, white)[0]) == 0 and int(_pixels(chair, white)[0]) > 40
    door = make_env("door", n=1)
    closed = door.render(cam)
    q = door.backend.qpos.clone()
    q[:, NQ] = -1.0
    door.backend.set_state(torch.arange(1), q, torch.zeros_like(door.backend.qvel))
    opened = door.render(cam)
    assert int(_pixels(closed, (0.72, 0.52, 0.3))[0]) > 100  # the leaf, seen nearly face-on
    changed = (opened - closed).abs().amax(1) > 0.1
    assert int(changed.sum()) > 100  # the swung leaf changes the picture...
    assert not bool(changed[0, :, 40:].any())  # ...on the image's left, where the door is (not the character)


# ------------------------------------------------------------------------------------------------ gpu engine


@pytest.fixture(scope="module")
def paired_engines():
    """The MIX scene on the gpu engine (warp's CPU device) and the cpu engine (float64), stepped side by side:
    env 0 stands, env 1 also gets the ball rolled at its feet and the door leaf swung."""
    wp = pytest.importorskip("warp")
    pytest.importorskip("mujoco_warp")
    wp.config.quiet = True
    from anyskill_tui.core.sim import make_backend

    gpu = make_backend("gpu", 2, "cpu", scene=MIX, render_size=None)
    cpu = make_backend("cpu", 2, "cpu", scene=MIX, dtype=torch.float64, threads=1)
    q = cpu.qpos.clone()
    q[:, 2] = T.DEFAULT_ROOT_HEIGHT
    v = torch.zeros_like(cpu.qvel)
    v[1, MIX_BALL_V] = -3.0
    v[1, MIX_LEAF_V] = -4.0
    for b in (gpu, cpu):
        b.set_state(torch.arange(2), q, v)
    target = (_OFF + _SCALE * ZERO).expand(2, -1).clone()
    err = 0.0
    for _ in range(15):
        for b in (gpu, cpu):
            b.step(target, T.CONTROL_SUBSTEPS)
        err = max(err, float((gpu.qpos.double() - cpu.qpos).abs().max()))
    return {"gpu": gpu, "cpu": cpu, "err": err, "q0": q}


def test_gpu_engine_matches_the_cpu_engine_resets_and_renders_objects(paired_engines):
    """One test (one warp model build per xdist worker): state and contact parity, reset, frames."""
    gpu, cpu = paired_engines["gpu"], paired_engines["cpu"]
    print(f"gpu vs cpu engine with objects: max |dqpos| {paired_engines['err']:.2e} over 15 control steps")
    assert paired_engines["err"] < 1e-3
    assert gpu.qpos.shape == cpu.qpos.shape == (2, NQ + 8)
    assert gpu.object_pos.shape == (2, 4, 3) and gpu.object_rot.shape == (2, 4, 4)
    np.testing.assert_allclose(gpu.object_pos.double(), cpu.object_pos, atol=1e-3)
    np.testing.assert_allclose(gpu.object_rot.double(), cpu.object_rot, atol=1e-3)
    # the objects moved in env 1 (collided with the foot, swung on the hinge) and not in env 0
    q0 = paired_engines["q0"]
    assert float(cpu.qpos[1, MIX_BALL_Q]) > 0.1 and float(cpu.qpos[1, MIX_LEAF_Q]) < -0.3
    np.testing.assert_allclose(cpu.qpos[0, NQ:], q0[0, NQ:], atol=2e-3)
    np.testing.assert_array_equal(gpu.body_contact.numpy(), cpu.body_contact.numpy())
    np.testing.assert_array_equal(gpu.body_fall_contact.numpy(), cpu.body_fall_contact.numpy())
    hand = T.BODY_INDEX["right_hand"]
    assert gpu.body_contact[:, hand].all() and not gpu.body_fall_contact[:, hand].any()
    # set_state puts the objects back (what every episode start writes) ...
    gpu.set_state(torch.tensor([1]), q0[1:], torch.zeros(1, gpu.qvel.shape[1]))
    np.testing.assert_allclose(gpu.qpos[1, NQ:].double(), q0[1, NQ:], atol=1e-6)
    np.testing.assert_allclose(gpu.object_pos[1, 0].double(), q0[1, NQ : NQ + 3], atol=1e-6)
    # ... and the ray-traced frames show them: the red ball and the blue pedestal in both worlds
    frames = gpu.render(CameraSpec(width=64, height=48))
    red = _pixels(frames, (0.9, 0.05, 0.05))
    blue = _pixels(frames, (0.1, 0.2, 0.95))
    assert (red > 10).all() and (blue > 3).all(), (red, blue)
    # env 1 (reset) and the cpu engine's frame of the same state put the ball in the same place
    cpu_frames = CpuBackend(1, model_options=scene_model_options(scene_from_dict(MIX)), nthread=1)
    cpu_frames.set_state(torch.tensor([0]), q0[1:], torch.zeros(1, gpu.qvel.shape[1]))
    ref = cpu_frames.render(CameraSpec(width=64, height=48))

    def centroid(f):
        c = torch.tensor((0.9, 0.05, 0.05)).view(3, 1, 1)
        ys, xs = ((f - c).abs() < 0.2).all(0).nonzero(as_tuple=True)
        return float(xs.float().mean()), float(ys.float().mean())

    (gx, gy), (cx, cy) = centroid(frames[1]), centroid(ref[0])
    assert abs(gx - cx) < 3 and abs(gy - cy) < 3, ((gx, gy), (cx, cy))
    cpu_frames.close()


# ------------------------------------------------------------------------------------------------ skills


@pytest.fixture
def tiny_clip(monkeypatch):
    pytest.importorskip("open_clip")
    from _skill_helpers import register_tiny

    register_tiny(monkeypatch)


def test_skill_config_scene_and_object_observation_switch():
    from _skill_helpers import posture_llc, small_cfg, unit

    from anyskill_tui.core.learn import skill_train as st
    from anyskill_tui.core.learn.skill_config import load_skill_config
    from anyskill_tui.core.learn.skill_policy import SkillPolicy

    shipped = load_skill_config()
    assert shipped.scene is None and shipped.network.object_obs is False and shipped.network.obs_dim == 223
    off = small_cfg(scene="door")
    assert off.scene.name == "door" and off.network.obs_dim == 223 and not off.uses_object_obs
    on = small_cfg(scene="door", network={"object_obs": True})
    assert on.network.obs_dim == 223 + 9  # the door leaf (the frame is static)
    stored = on.to_dict()
    assert stored["scene"]["bodies"][0]["name"] == "door_frame"  # the resolved scene, not its name
    assert type(on).model_validate(stored) == on
    with pytest.raises(ConfigError, match="obs_dim is 200"):
        small_cfg(scene="door", network={"object_obs": True, "obs_dim": 200})
    env = st.build_env(on)
    target = torch.tensor([[1.0, 0.0]])
    tr = st.SkillTrainer(on, posture_llc(0), env, _DoorScorer(), target, style_refs=unit(torch.randn(4, 64)))
    obs = env.reset()
    h = tr.hlc_obs(obs.float())
    assert h.shape == (4, 232) and torch.equal(h[:, :223], obs.float())
    # the leaf's observed position: its origin (on the hinge line) relative to the root, heading frame
    leaf = env.object_pos[0, 1] - env.root_pos[0]
    torch.testing.assert_close(h[0, 223:226], leaf.float())
    store, _ = tr.rollout()
    assert store["obs"].shape == (on.ppo.horizon_length, 4, 232)
    policy = SkillPolicy.from_state(tr.checkpoint_state())
    assert policy.obs_dim == 232 and policy.act(h).shape == (4, 64)
    out = st.evaluate_policy(policy, tr.llc, env, _DoorScorer(), target)
    assert out["frames"] > 0


class _DoorScorer:
    """Features of the door's hinge angle θ: (cos θ, sin θ); the cosine to a target (cos θ*, sin θ*) is cos(θ−θ*).
    A stand-in for the image encoder that scores the object's state through the same SkillTrainer reward path."""

    renders = False

    def features(self, env):
        th = env.object_qpos[:, 0].float()
        return torch.stack([th.cos(), th.sin()], -1)


def test_rendered_clip_reward_sees_the_door(tiny_clip):
    """The real render -> CLIP reward path of SkillTrainer.decision ranks the same frame with the door shut, half
    open and open by their closeness to an open-door target embedding (a tiny random open_clip, 32 px: its
    embeddings of any two frames are close, so the test compares distances 1 - cos)."""
    from _skill_helpers import posture_llc, small_cfg, tiny_open_clip, tiny_reward, unit

    from anyskill_tui.core.learn import skill_train as st

    reward = tiny_reward(tiny_open_clip(0))
    cfg = small_cfg(scene="door", reward={"render_every": "decision"}, env={"num_envs": 3})
    env = st.build_env(cfg)
    llc = posture_llc(0, gain=0.0)  # holds the zero pose: the character does not touch the door
    env.reset()
    q = env.backend.qpos.clone()
    q[1, NQ] = -0.6  # env 1: the door half open, env 2: open
    q[2, NQ] = -1.2
    env.backend.set_state(torch.arange(3), q, torch.zeros_like(env.backend.qvel))
    target = reward.encode_images(env.render()[2:])  # "an open door", as the image encoder sees it
    tr = st.SkillTrainer(cfg, llc, env, st.ClipScorer(reward), target, style_refs=unit(torch.randn(4, 64)))
    res = tr.decision(unit(torch.randn(3, 64)), env.obs)
    torch.testing.assert_close(env.object_qpos[:, 0], torch.tensor([0.0, -0.6, -1.2]), atol=2e-3, rtol=0)
    dist = 1.0 - res.sim
    print(f"door shut, half open, open: 1 - cos to the open-door embedding {dist.tolist()}")
    assert float(dist[2]) < 0.5 * float(dist[1]) and float(dist[1]) < 0.8 * float(dist[0])


def test_learning_opens_the_door_towards_the_target_angle():
    """A constructed target: the door open at θ* = −60°, scored by `_DoorScorer` through SkillTrainer's reward
    path (the rendered tiny CLIP is too weak and slow a signal for a CI-sized run); the LLC holds random postures
    (`posture_llc`), about 1 in 8 of which pushes the leaf. After 30 epochs of 16 envs the deterministic policy
    opens the door (measured: 0° -> -44°, cosine 0.50 -> 0.69; 4 seeds x 60 epochs: -39° to -57°)."""
    from _skill_helpers import posture_llc, small_cfg, unit

    from anyskill_tui.core.learn import skill_train as st

    theta = math.radians(-60)
    cfg = small_cfg(
        scene="door",
        env={"num_envs": 16, "episode_length": 20, "enable_early_termination": False},
        reward={"style_reward_w": 0.0},
        ppo={"minibatch_size": 32, "learning_rate": 1e-3, "mini_epochs": 6, "max_epochs": 1000},
    )
    torch.manual_seed(0)
    llc = posture_llc(0)
    env = st.build_env(cfg)
    target = torch.tensor([[math.cos(theta), math.sin(theta)]])
    tr = st.SkillTrainer(cfg, llc, env, _DoorScorer(), target, style_refs=unit(torch.randn(8, 64)))

    def evaluate():
        angle = {}
        out = st.evaluate_policy(
            tr.policy, llc, env, _DoorScorer(), target, on_frame=lambda k, e: angle.update({k: e.object_qpos[:, 0]})
        )
        return out["clip_score"], math.degrees(float(angle[max(angle)].mean()))

    sim0, deg0 = evaluate()
    for _ in range(100):
        tr.train_epoch()
    sim1, deg1 = evaluate()
    print(f"door learning: similarity {sim0:.3f} -> {sim1:.3f}; final hinge angle {deg0:.1f} -> {deg1:.1f} deg")
    assert abs(deg0) < 5.0  # the untrained policy leaves the door shut
    assert deg1 < -30.0  # the trained one opens it towards -60 (100 epochs: -63 deg here)
    assert sim1 > sim0 + 0.1


def test_cli_train_in_a_scene_records_it_and_replay_rebuilds_it(tiny_clip, tmp_path, monkeypatch):
    """`anyskill train "kick the door" --scene door` (tiny CLIP, random LLC, 1 epoch): the run's config holds the
    resolved door; `anyskill replay run:N --contact-sheet` rebuilds it (the door's colours in the sheet). The
    proxy reward and an unknown scene are refused before anything is written."""
    import yaml
    from _skill_helpers import TINY, tiny_open_clip
    from PIL import Image
    from typer.testing import CliRunner

    from anyskill_tui.cli import app
    from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import init_workspace

    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    ws = init_workspace(tmp_path / "ws")[0].root
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_open_clip(0).state_dict(), weights)
    llc = save_llc_policy(tmp_path / "llc.pt", random_llc_policy(0))
    cfg = tmp_path / "skill.yaml"
    small = {
        "env": {"threads": 1, "episode_length": 10, "camera": {"width": 32, "height": 32}},
        "network": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]},
        "ppo": {"minibatch_size": 8, "horizon_length": 2, "save_frequency": 1},
        "reward": {"render_every": "decision"},
        "eval": {"num_envs": 1},
        "clip": {"pretrained": None},
    }
    cfg.write_text(yaml.safe_dump(small))
    runner = CliRunner()
    args = ["--workspace", str(ws), "train", "kick the door", "--llc", str(llc), "--engine", "cpu", "--envs", "2"]
    args += ["--epochs", "1", "--clip-model", TINY, "--clip-weights", str(weights), "--config", str(cfg)]

    r = runner.invoke(app, [*args, "--scene", "door", "--reward", "proxy", "--proxy", str(llc)])
    assert r.exit_code == 1 and "--reward proxy cannot train with scene 'door'" in r.output
    assert "use --reward render" in " ".join(r.output.split())
    r = runner.invoke(app, [*args, "--scene", "sofa"])
    assert r.exit_code == 1 and "unknown scene 'sofa'" in r.output
    with Library(ws / "skills.db") as lib:
        assert lib.list_runs() == [] and lib.list_skills() == []

    r = runner.invoke(app, [*args, "--scene", "door", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    with Library(ws / "skills.db") as lib:
        (run,) = lib.list_runs()
        assert run.status == "done" and run.config["scene"]["name"] == "door"
        assert run.config["scene"]["bodies"][0]["bodies"][0]["joint"]["type"] == "hinge"
    sheet = tmp_path / "sheet.png"
    r = runner.invoke(
        app,
        ["--workspace", str(ws), "replay", f"run:{run.id}", "--seconds", "0.3", "--size", "64"]
        + ["--contact-sheet", str(sheet)],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    assert "scene 'door'" in r.output
    img = torch.from_numpy(np.asarray(Image.open(sheet).convert("RGB"), dtype=np.float32) / 255.0)
    leaf = ((img - torch.tensor([0.72, 0.52, 0.3])).abs() < 0.12).all(-1)
    assert int(leaf.sum()) > 200  # the door leaf in the replayed frames
