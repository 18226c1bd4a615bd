import subprocess
import sys

import pytest

from anyskill_tui.core.learn.calm import CalmLossCoeffs
from anyskill_tui.core.learn.config import (
    ConfigError,
    LlcConfig,
    default_llc_config_path,
    llc_config_from_dict,
    load_llc_config,
)


def test_config_module_does_not_import_torch():
    code = "import sys, anyskill_tui.core.learn.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_shipped_config_loads_with_spec_values():
    cfg = load_llc_config()
    assert default_llc_config_path().name == "llc.yaml"
    assert cfg == LlcConfig()  # the YAML restates the defaults
    assert cfg.env.num_envs == 1024 and cfg.env.episode_length == 300
    assert cfg.env.state_init == "hybrid" and cfg.env.hybrid_init_prob == 0.5
    assert (cfg.env.num_amp_obs_steps, cfg.env.num_amp_enc_obs_steps) == (10, 60)
    assert (cfg.ppo.horizon_length, cfg.ppo.minibatch_size, cfg.ppo.mini_epochs) == (32, 4096, 6)
    assert cfg.ppo.learning_rate == 2e-5 and (cfg.ppo.gamma, cfg.ppo.tau, cfg.ppo.e_clip) == (0.99, 0.95, 0.2)
    assert not cfg.ppo.truncate_grads and cfg.ppo.mixed_precision
    assert (cfg.calm.demo_buffer_size, cfg.calm.replay_buffer_size, cfg.calm.replay_keep_prob) == (50000, 50000, 0.01)
    assert (cfg.calm.amp_batch_size, cfg.calm.amp_minibatch_size) == (512, 1024)
    assert (cfg.calm.latent_steps_min, cfg.calm.latent_steps_max) == (10, 150)
    assert cfg.network.log_std == -2.9 and cfg.network.actor_hidden == (1024, 1024, 512)
    assert cfg.batch_size == 32 * 1024
    assert cfg.loss_coeffs() == CalmLossCoeffs()


def test_round_trip_and_overrides(tmp_path):
    cfg = llc_config_from_dict(
        {}, overrides={"env.num_envs": 64, "ppo.minibatch_size": 512, "calm.amp_minibatch_size": 256, "seed": 3}
    )
    assert cfg.env.num_envs == 64 and cfg.seed == 3
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_llc_config(p) == cfg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ppo:\n  gamma: 1.5\n", "ppo.gamma: Input should be less than or equal to 1"),
        ("ppo:\n  gamam: 0.9\n", "ppo.gamam: unknown key"),
        ("env:\n  state_init: sideways\n", "env.state_init"),
        ("calm:\n  latent_steps_min: 200\n", "calm.latent_steps_min: must be smaller"),
        ("ppo:\n  minibatch_size: 3000\n", "ppo.minibatch_size: 3000 must divide horizon_length x num_envs"),
        ("network:\n  actor_hidden: [64, 0]\n", "network.actor_hidden.1"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("ppo: [unclosed\n", "line"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_llc_config(p)
    msg = str(info.value)
    assert msg.startswith(str(p)) and needle in msg and "\n" not in msg


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_llc_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "overrides",
    [
        {"env.num_envs": 16},  # the shipped minibatches exceed a 16-env epoch
        {"env.num_envs": 100},  # 3,200 samples: 4,096 is too big; a divisor must be found
        {"env.num_envs": 1000},  # 32,000 samples: 4,096 does not divide them
        {"calm.amp_minibatch_size": 8192},
    ],
)
def test_batch_errors_give_the_overrides_that_fix_them(overrides):
    """The message of a minibatch that does not fit the epoch ends with the --set overrides that make it fit;
    applying them gives a valid config (one retry, not one error after another)."""
    import re

    with pytest.raises(ConfigError) as info:
        llc_config_from_dict({}, overrides=overrides)
    fix = dict(kv.split("=") for kv in re.findall(r"--set (\S+)", str(info.value)))
    assert fix, str(info.value)
    cfg = llc_config_from_dict({}, overrides={**overrides, **{k: int(v) for k, v in fix.items()}})
    assert cfg.batch_size % cfg.ppo.minibatch_size == 0
    assert cfg.calm.amp_minibatch_size <= cfg.ppo.minibatch_size
