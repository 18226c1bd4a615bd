"""The humanoid model: masses, sizes, actuator order, the checked-in XML, the reference file, PD mapping, stability."""

from __future__ import annotations

import math
import re

import mujoco
import numpy as np
import pytest

from anyskill_tui.core.character import model as M
from anyskill_tui.core.character import tables as T
from anyskill_tui.paths import shared_reference_dir


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return M.load_model()


def test_sizes(model):
    assert model.nq == 35
    assert model.nv == 34
    assert model.nu == 28
    assert model.nbody == T.NUM_BODIES + 1
    assert [model.body(i + 1).name for i in range(T.NUM_BODIES)] == list(T.BODY_NAMES)


def test_body_masses(model):
    np.testing.assert_allclose(model.body_mass[1:], T.BODY_MASSES, atol=1e-2)


def test_body_offsets_and_parents(model):
    np.testing.assert_allclose(model.body_pos[2:], T.LOCAL_TRANSLATION[1:], atol=1e-9)
    assert [int(p) - 1 for p in model.body_parentid[1:]] == [-1] + list(T.PARENT_INDICES[1:])


def test_actuator_order_is_dof_order(model):
    for i, d in enumerate(T.DOFS):
        jid = model.actuator_trnid[i, 0]
        assert model.joint(jid).name == d.name
        assert model.jnt_qposadr[jid] == 7 + i
        assert model.jnt_dofadr[jid] == 6 + i
        assert model.actuator(i).name == d.name


def test_checked_in_xml_matches_generator():
    assert M.XML_PATH.read_text() == M.humanoid_xml()


def test_pd_offset_scale_matches_spec_table():
    offset, scale = T.pd_offset_scale()
    s3 = {"abdomen": 1.8850, "neck": 1.2566, "shoulder": 3.1416, "hip": 2.9322, "ankle": 1.1519}
    exp_off = np.zeros(28)
    exp_scale = np.zeros(28)
    for i, d in enumerate(T.DOFS):
        if d.name.endswith(("elbow", "knee")):
            exp_off[i] = -1.3963 if d.name.endswith("elbow") else 1.3963
            exp_scale[i] = 1.9548
        else:
            key = next(k for k in s3 if k in d.name)
            exp_scale[i] = s3[key]
    np.testing.assert_allclose(offset, exp_off, atol=1e-4)
    np.testing.assert_allclose(scale, exp_scale, atol=1e-4)


def _reference_model():
    ref = shared_reference_dir()
    if ref is None or not (ref / "amp_humanoid.xml").is_file():
        pytest.skip("reference amp_humanoid.xml not available")
    xml = (ref / "amp_humanoid.xml").read_text()
    xml = re.sub(r'\s*material="grid"', "", xml)
    return mujoco.MjModel.from_xml_string(xml)


def test_compatible_with_reference_file(model):
    ref = _reference_model()
    assert ref.nbody == model.nbody
    for i in range(1, model.nbody):
        assert ref.body(i).name == model.body(i).name
        np.testing.assert_allclose(ref.body_pos[i], model.body_pos[i], atol=1e-9)
        assert ref.body_parentid[i] == model.body_parentid[i]
    np.testing.assert_allclose(model.body_mass[1:], ref.body_mass[1:], rtol=1e-2)
    # joints (hinges, by name)
    for d in T.DOFS:
        np.testing.assert_allclose(ref.joint(d.name).range, model.joint(d.name).range, atol=1e-9)
        np.testing.assert_allclose(ref.joint(d.name).axis, model.joint(d.name).axis, atol=1e-12)
        assert ref.jnt_bodyid[ref.joint(d.name).id] == model.jnt_bodyid[model.joint(d.name).id]
    # geoms of the character (by name)
    for gi in range(ref.ngeom):
        name = ref.geom(gi).name
        if name == "floor":
            continue
        g = model.geom(name)
        np.testing.assert_allclose(ref.geom(gi).size, g.size, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(ref.geom(gi).pos, g.pos, atol=1e-9, err_msg=name)
        assert ref.geom(gi).type == g.type
        assert ref.geom_bodyid[gi] == model.geom_bodyid[g.id]


def test_stability_random_pd_targets_from_fallen_states(model):
    rng = np.random.default_rng(0)
    d = mujoco.MjData(model)
    lo, hi = T.dof_limits()
    offset, scale = T.pd_offset_scale()
    steps = int(round(5.0 / model.opt.timestep))
    hold = int(round(0.5 / model.opt.timestep))
    ok = 0
    worst = 0.0
    for _ in range(100):
        mujoco.mj_resetData(model, d)
        q = rng.normal(size=4)
        d.qpos[:3] = (0.0, 0.0, 0.9)
        d.qpos[3:7] = q / np.linalg.norm(q)
        d.qpos[7:] = rng.uniform(lo, hi)
        max_v = 0.0
        finite = True
        for k in range(steps):
            if k % hold == 0:
                d.ctrl[:] = offset + scale * rng.uniform(-1.0, 1.0, size=T.NUM_DOFS)
            mujoco.mj_step(model, d)
            v = float(np.abs(d.qvel).max())
            if not math.isfinite(v):
                finite = False
                break
            max_v = max(max_v, v)
        bad = d.warning[int(mujoco.mjtWarning.mjWARN_BADQACC)].number
        worst = max(worst, max_v)
        if finite and bad == 0 and max_v < 1e3 and np.all(np.isfinite(d.qvel)):
            ok += 1
    assert ok == 100, f"{ok}/100 trials stable, worst |qvel| {worst:.1f}"
    assert math.isfinite(worst)


def test_euler_equals_implicitfast_for_this_model():
    """The default Euler integrator (kd as joint damping, integrated implicitly by eulerdamp; actuators with kv = 0)
    gives the trajectories of `implicitfast`, whose only extra is that same velocity derivative (model docstring)."""
    off, scale = T.pd_offset_scale()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(60, len(off)))  # one per 30 Hz control step
    runs = []
    for integrator in ("Euler", "implicitfast"):
        m = M.load_model(M.ModelOptions(integrator=integrator))
        d = mujoco.MjData(m)
        d.qpos[2] = 1.2  # dropped from above the floor: impacts, contacts, a fall
        out = []
        for step in range(240):
            d.ctrl[:] = np.asarray(off) + np.asarray(scale) * actions[step // 4]
            mujoco.mj_step(m, d)
            out.append(d.qpos.copy())
        runs.append(np.array(out))
    assert M.load_model().opt.integrator == mujoco.mjtIntegrator.mjINT_EULER  # the default
    assert np.abs(runs[0][-1] - runs[0][0]).max() > 0.1  # it moved
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-9)
