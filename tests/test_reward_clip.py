"""CLIP reward: device preprocessing, encoders, per-env cosine, weight resolution and the workspace text cache.

Tiny randomly initialised open_clip models, registered under test names and built through the real code path
(``open_clip.create_model``); nothing is downloaded (HF_HUB_OFFLINE=1, download functions patched to fail).
Needs open_clip (the ``.venv-clip`` environment); skipped elsewhere.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

open_clip = pytest.importorskip("open_clip")

from anyskill_tui.core.reward import text_cache as tc  # noqa: E402
from anyskill_tui.core.reward.clip import (  # noqa: E402
    CLIP_WEIGHTS_ENV,
    ClipConfig,
    ClipModelError,
    ClipRewardModel,
    ClipWeightsError,
    cosine_to_prompts,
    preprocess_frames,
    resolve_autocast_dtype,
)
from anyskill_tui.errors import UserError  # noqa: E402

TINY = "AnySkill-Tiny-T"
TINY_OTHER = "AnySkill-Tiny-U"  # same architecture, another name
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
WIDE_CFG = {**TINY_CFG, "embed_dim": 48}
PROMPTS = ["a person jumps", "a person waves the right hand"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Register the tiny configs, forbid every download, and keep the real environment's weights out."""
    import huggingface_hub.constants as hfc
    from open_clip import factory, pretrained

    for name, cfg in ((TINY, TINY_CFG), (TINY_OTHER, TINY_CFG), ("AnySkill-Tiny-Wide", WIDE_CFG)):
        monkeypatch.setitem(factory._MODEL_CONFIGS, name, cfg)
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # read at import by huggingface_hub
    monkeypatch.delenv(CLIP_WEIGHTS_ENV, raising=False)

    def no_url(*a, **k):
        raise AssertionError("test tried to download from a URL")

    monkeypatch.setattr(pretrained, "download_pretrained_from_url", no_url)


def save_tiny_weights(path, name: str = TINY, seed: int = 0):
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def weights_file(tmp_path):
    return save_tiny_weights(tmp_path / "tiny.pt")


@pytest.fixture
def reward(weights_file) -> ClipRewardModel:
    return ClipRewardModel(TINY, weights=weights_file, environ={}, batch_size=3)


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0.2, 0.8], so bicubic resizing never overshoots [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 5, 5, generator=g)
    return 0.2 + 0.6 * F.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)


def reference_similarity(weights_path, frames, prompts, prompt_index, size=32):
    """Direct open_clip: hand preprocessing (interpolate + mean/std), encode_image/encode_text, normalise, cosine."""
    model = open_clip.create_model(TINY, pretrained=None)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    model.eval()
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    with torch.no_grad():
        img = F.normalize(model.encode_image((x - mean) / std), dim=-1)
        txt = F.normalize(model.encode_text(open_clip.get_tokenizer(TINY)(prompts)), dim=-1)
    return (img * txt[prompt_index]).sum(-1), img, txt


# -- the pipeline against open_clip ---------------------------------------------------------------


def test_similarity_equals_direct_open_clip(reward, weights_file, tmp_path) -> None:
    frames = torch.rand(7, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    idx = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    text = reward.text_features(PROMPTS, cache=tmp_path / "ws")
    got = reward.similarity(frames, text, idx)
    want, img, txt = reference_similarity(weights_file, frames, PROMPTS, idx)
    assert got.shape == (7,) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(reward.encode_images(frames), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(text, txt, atol=1e-5, rtol=0)
    assert torch.allclose(reward.encode_images(frames).norm(dim=-1), torch.ones(7), atol=1e-5)
    # same through the cache on a second call, and at the model's size (no resize)
    torch.testing.assert_close(reward.text_features(PROMPTS, cache=tmp_path / "ws"), txt, atol=1e-5, rtol=0)
    small = torch.rand(2, 3, 32, 32)
    want_small, _, _ = reference_similarity(weights_file, small, PROMPTS, torch.tensor([1, 0]))
    torch.testing.assert_close(reward.similarity(small, text, torch.tensor([1, 0])), want_small, atol=1e-5, rtol=0)


def test_preprocess_cfg_comes_from_the_model(reward) -> None:
    assert reward.image_size == (32, 32)
    assert reward.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert reward.std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    assert (reward.interpolation, reward.resize_mode) == ("bicubic", "shortest")
    assert reward.raw_255_input is False and reward.autocast_dtype is None  # CPU: no autocast by default
    assert reward.embed_dim == 32 and reward.weights.kind == "file"


@pytest.mark.parametrize("hw", [(40, 56), (56, 40), (33, 90), (32, 32), (20, 24)])
@pytest.mark.parametrize("mode", ["shortest", "squash"])
def test_preprocess_matches_open_clip_transform(hw, mode) -> None:
    """Geometry (shortest side + center crop, squash) as open_clip's own eval transform on tensors."""
    frames = smooth_frames(3, *hw)
    mine = preprocess_frames(frames, 32, resize_mode=mode)
    tf = open_clip.image_transform(32, is_train=False, resize_mode=mode)
    theirs = torch.stack([tf(f) for f in frames])
    assert mine.shape == theirs.shape == (3, 3, 32, 32)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_preprocess_longest_and_non_square_target_against_pil() -> None:
    """Modes open_clip implements for PIL only (ResizeKeepRatio): compare with PIL, within uint8 rounding."""
    from PIL import Image

    frames = smooth_frames(2, 40, 64)
    u8 = (frames * 255).round().to(torch.uint8)
    for mode, size in (("longest", 32), ("shortest", (24, 32)), ("shortest", (32, 24)), ("shortest", 32)):
        tf = open_clip.image_transform(size, is_train=False, resize_mode=mode)
        theirs = torch.stack([tf(Image.fromarray(f.permute(1, 2, 0).numpy())) for f in u8])
        mine = preprocess_frames(u8, size, resize_mode=mode)
        assert mine.shape == theirs.shape
        # measured 0.015 (one uint8 step / std); a crop off by one pixel gives 0.17 or more
        torch.testing.assert_close(mine, theirs, atol=0.025, rtol=0)


def test_preprocess_input_forms() -> None:
    f = torch.rand(2, 3, 32, 32)
    rgba = torch.cat([f, torch.ones(2, 1, 32, 32)], 1)
    torch.testing.assert_close(preprocess_frames(rgba, 32), preprocess_frames(f, 32))
    u8 = (f * 255).round().to(torch.uint8)
    torch.testing.assert_close(preprocess_frames(u8, 32), preprocess_frames(u8.float() / 255, 32))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        preprocess_frames(torch.rand(2, 32, 32, 3), 32)
    with pytest.raises(ValueError, match="resize_mode"):
        preprocess_frames(f, 16, resize_mode="zoom")


def test_raw_255_switch(weights_file) -> None:
    frames = torch.rand(4, 3, 32, 32)
    x = preprocess_frames(frames, 32, raw_255_input=True)
    torch.testing.assert_close(x, frames * 255)  # the reference's input: 0-255, no mean/std
    normal = ClipRewardModel(TINY, weights=weights_file, environ={})
    raw = ClipRewardModel(TINY, weights=weights_file, environ={}, raw_255_input=True)
    assert normal.raw_255_input is False and ClipConfig().raw_255_input is False
    assert raw.preprocess(frames).max() > 100 and normal.preprocess(frames).abs().max() < 5
    a, b = normal.encode_images(frames), raw.encode_images(frames)
    assert (a - b).abs().max() > 1e-2
    model = open_clip.create_model(TINY, pretrained=None)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    with torch.no_grad():
        want = F.normalize(model.eval().encode_image(frames * 255), dim=-1)
    torch.testing.assert_close(b, want, atol=1e-5, rtol=0)


# -- the per-env prompt (spec §9.5) -------------------------------------------------------------------


def test_each_env_is_scored_against_its_own_prompt(reward) -> None:
    frames = torch.rand(4, 3, 32, 32)
    text = reward.encode_texts(PROMPTS)
    img = reward.encode_images(frames)
    idx = torch.tensor([1, 0, 1, 1])
    sim = reward.similarity(frames, text, idx)
    all_pairs = img @ text.T  # (N, P)
    torch.testing.assert_close(sim, all_pairs[torch.arange(4), idx], atol=1e-6, rtol=0)
    # the reference's text_latents[latent_text_idx] with a per-env latent table scores env i against env idx_i's
    # prompt: here env 1 (prompt 0) would be scored with env 0's prompt (1). Ours differs from that.
    per_env = text[idx]
    buggy = (img * per_env[idx]).sum(-1)
    assert not torch.allclose(sim, buggy)
    assert not torch.allclose(sim[1], all_pairs[1, 1])
    # targets that differ: frames that ARE the text direction score 1 with their own prompt only
    own = cosine_to_prompts(text[[0, 1]], text, torch.tensor([0, 1]))
    swapped = cosine_to_prompts(text[[0, 1]], text, torch.tensor([1, 0]))
    torch.testing.assert_close(own, torch.ones(2))
    assert (swapped < 0.999).all()


def test_cosine_to_prompts_checks() -> None:
    img = F.normalize(torch.randn(3, 8), dim=-1)
    one = F.normalize(torch.randn(1, 8), dim=-1)
    torch.testing.assert_close(cosine_to_prompts(img, one), (img @ one.T)[:, 0])
    with pytest.raises(ValueError, match="required"):
        cosine_to_prompts(img, torch.randn(2, 8))
    with pytest.raises(ValueError, match="out of range"):
        cosine_to_prompts(img, torch.randn(2, 8), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        cosine_to_prompts(img, torch.randn(2, 8), torch.tensor([0, 1]))


def test_chunking_does_not_change_features(weights_file) -> None:
    frames = torch.rand(7, 3, 40, 40)
    one = ClipRewardModel(TINY, weights=weights_file, environ={}, batch_size=1).encode_images(frames)
    many = ClipRewardModel(TINY, weights=weights_file, environ={}, batch_size=64).encode_images(frames)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)


def test_autocast_modes(weights_file) -> None:
    assert resolve_autocast_dtype("auto", "cpu") is None
    assert resolve_autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert resolve_autocast_dtype("fp16", "cuda") is torch.float16
    assert resolve_autocast_dtype("off", "cuda") is None
    with pytest.raises(ClipModelError):
        resolve_autocast_dtype("tf32", "cpu")
    frames = torch.rand(3, 3, 32, 32)
    fp32 = ClipRewardModel(TINY, weights=weights_file, environ={}).encode_images(frames)
    bf16 = ClipRewardModel(TINY, weights=weights_file, environ={}, autocast="bf16").encode_images(frames)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0)


def test_half_image_tower(weights_file) -> None:
    """clip.half_image_tower: the image tower's weights in the autocast dtype, frames encoded in it without
    autocast, close to autocast's features; the text tower untouched; no effect when autocast is off."""
    frames = torch.rand(3, 3, 32, 32)
    auto = ClipRewardModel(TINY, weights=weights_file, environ={}, autocast="bf16")
    half = ClipRewardModel(TINY, weights=weights_file, environ={}, autocast="bf16", half_image_tower=True)
    assert half.image_dtype is torch.bfloat16 and auto.image_dtype is None
    assert {p.dtype for p in half.model.visual.parameters()} == {torch.bfloat16}
    assert next(half.model.transformer.parameters()).dtype == torch.float32
    got = half.encode_images(frames)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, auto.encode_images(frames), atol=0.05, rtol=0)
    torch.testing.assert_close(half.encode_texts(PROMPTS), auto.encode_texts(PROMPTS), atol=0, rtol=0)
    off = ClipRewardModel(TINY, weights=weights_file, environ={}, autocast="off", half_image_tower=True)
    assert off.image_dtype is None and next(off.model.visual.parameters()).dtype == torch.float32
    cfg = ClipConfig.from_mapping({"model": TINY, "weights": str(weights_file), "half_image_tower": True})
    assert cfg.half_image_tower
    with pytest.raises(ClipModelError, match="half_image_tower"):
        ClipConfig.from_mapping({"half_image_tower": "yes"})


# -- weights ----------------------------------------------------------------------------------------


def test_weights_argument_and_environment_give_the_same_features(weights_file, monkeypatch) -> None:
    frames = torch.rand(3, 3, 32, 32)
    by_arg = ClipRewardModel(TINY, weights=str(weights_file), environ={})
    monkeypatch.setenv(CLIP_WEIGHTS_ENV, str(weights_file))
    by_env = ClipRewardModel(TINY)  # reads os.environ; the default pretrained tag is not consulted
    assert by_arg.weights.origin == "argument" and by_env.weights.origin == CLIP_WEIGHTS_ENV
    assert by_env.weights.path == str(weights_file)
    torch.testing.assert_close(by_arg.encode_images(frames), by_env.encode_images(frames), atol=0, rtol=0)
    torch.testing.assert_close(by_arg.encode_texts(PROMPTS), by_env.encode_texts(PROMPTS), atol=0, rtol=0)
    # the argument wins over the environment
    other = save_tiny_weights(weights_file.parent / "other.pt", seed=5)
    chosen = ClipRewardModel(TINY, weights=other)
    assert chosen.weights.path == str(other)
    assert not torch.allclose(chosen.encode_images(frames), by_env.encode_images(frames))
    # random weights differ from the file's
    assert ClipRewardModel(TINY, pretrained=None, environ={}).weights.kind == "random"


def test_config_section(weights_file) -> None:
    cfg = ClipConfig.from_mapping({"model": TINY, "pretrained": None, "weights": str(weights_file), "batch_size": 2})
    r = ClipRewardModel.from_config(cfg, environ={})
    assert r.batch_size == 2 and r.weights.path == str(weights_file)
    assert ClipConfig.from_mapping(None) == ClipConfig()
    assert (ClipConfig().model, ClipConfig().pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
    import yaml

    from anyskill_tui.paths import configs_dir

    shipped = ClipConfig.from_mapping(yaml.safe_load((configs_dir() / "skill.yaml").read_text())["clip"])
    assert shipped.model == "ViT-B-32" and shipped.pretrained == "laion2b_s34b_b79k" and not shipped.raw_255_input
    with pytest.raises(ClipModelError, match=r"clip\.batchsize: unknown key"):
        ClipConfig.from_mapping({"batchsize": 2})
    with pytest.raises(ClipModelError, match="raw_255_input"):
        ClipConfig.from_mapping({"raw_255_input": "yes"})


def test_missing_weights_file(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nope" / "clip.bin"
    with pytest.raises(ClipWeightsError) as e:
        ClipRewardModel(TINY, weights=missing, environ={})
    assert isinstance(e.value, UserError)
    assert str(missing) in str(e.value) and "not found" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv(CLIP_WEIGHTS_ENV, str(missing))
    with pytest.raises(ClipWeightsError, match=f"not found: .*clip.bin \\(from {CLIP_WEIGHTS_ENV}\\)"):
        ClipRewardModel(TINY)
    with pytest.raises(ClipWeightsError, match="not a file"):
        ClipRewardModel(TINY, weights=tmp_path, environ={})


def test_weights_for_another_architecture(tmp_path) -> None:
    wide = save_tiny_weights(tmp_path / "wide.pt", name="AnySkill-Tiny-Wide")
    with pytest.raises(ClipWeightsError) as e:
        ClipRewardModel(TINY, weights=wide, environ={})
    msg = str(e.value)
    assert str(wide) in msg and "do not match the AnySkill-Tiny-T architecture" in msg and "\n" not in msg
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ClipWeightsError, match="junk.bin .*not a readable open_clip checkpoint"):
        ClipRewardModel(TINY, weights=junk, environ={})


def test_no_weights_and_offline_hub_names_both_options(tmp_path) -> None:
    """Real open_clip -> huggingface_hub path, offline, with an empty cache: one clear error."""
    with pytest.raises(ClipWeightsError) as e:
        ClipRewardModel("ViT-B-32", "laion2b_s34b_b79k", environ={}, cache_dir=tmp_path / "empty")
    msg = str(e.value)
    assert msg.startswith("could not load CLIP weights for ViT-B-32/laion2b_s34b_b79k: not in the cache (")
    assert str(tmp_path / "empty") in msg and "hub is unreachable (OfflineModeIsEnabled: " in msg
    assert "--clip-weights PATH" in msg and CLIP_WEIGHTS_ENV in msg and "\n" not in msg


def test_unreachable_hub_default_cache(monkeypatch, tmp_path) -> None:
    """Download failing like a dead network: the message names the default (HF) cache and both options."""
    from open_clip import pretrained

    calls = []

    def dead(*args, **kwargs):
        calls.append(kwargs.get("repo_id"))
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(pretrained, "hf_hub_download", dead)
    with pytest.raises(ClipWeightsError) as e:
        ClipRewardModel(environ={})  # the defaults: ViT-B-32 / laion2b_s34b_b79k
    msg = str(e.value)
    assert calls and all(c == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" for c in calls)
    assert str(tmp_path / "empty-hf-cache") in msg and "(ConnectionError: Failed to resolve 'huggingface.co')" in msg
    assert "Download once with network access" in msg and "--clip-weights PATH" in msg and CLIP_WEIGHTS_ENV in msg


def test_tag_weights_from_the_cache(monkeypatch, tmp_path, weights_file) -> None:
    """A tag whose download resolves to a cached file is loaded with the tag's preprocessing."""
    from open_clip import pretrained

    tag_cfg = {"hf_hub": "someone/tiny/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "resize_mode": "squash"}
    monkeypatch.setitem(pretrained._PRETRAINED, TINY, {"test_tag": tag_cfg})
    monkeypatch.setattr(pretrained, "hf_hub_download", lambda **kw: str(weights_file))
    r = ClipRewardModel(TINY, "test_tag", environ={})
    assert (r.weights.kind, r.weights.origin, r.weights.identity) == ("tag", "download", "tag:test_tag")
    assert r.weights.path == str(weights_file)
    assert r.mean == (0.5, 0.5, 0.5) and r.std == (0.25, 0.25, 0.25) and r.resize_mode == "squash"
    frames = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(r.preprocess(frames), (frames - 0.5) / 0.25)
    direct = ClipRewardModel(TINY, weights=weights_file, environ={})
    torch.testing.assert_close(r.encode_texts(PROMPTS), direct.encode_texts(PROMPTS), atol=0, rtol=0)
    with pytest.raises(ClipModelError, match="unknown pretrained tag 'nope' .*known tags: test_tag"):
        ClipRewardModel(TINY, "nope", environ={})


def test_tag_weights_found_in_the_hub_cache_without_network(monkeypatch, tmp_path, weights_file) -> None:
    """A tag already in the HF hub cache (the layout huggingface_hub writes) loads with no request at all."""
    import shutil

    from open_clip import pretrained

    monkeypatch.setitem(pretrained._PRETRAINED, TINY, {"cached_tag": {"hf_hub": "someone/tiny/"}})

    def dead(*args, **kwargs):
        raise AssertionError("a network request for weights that are in the cache")

    monkeypatch.setattr(pretrained, "hf_hub_download", dead)
    repo = tmp_path / "empty-hf-cache" / "models--someone--tiny"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    cached = repo / "snapshots" / "abc123" / "open_clip_pytorch_model.bin"
    shutil.copy(weights_file, cached)
    r = ClipRewardModel(TINY, "cached_tag", environ={})
    assert (r.weights.kind, r.weights.origin, r.weights.path) == ("tag", "cache", str(cached))
    direct = ClipRewardModel(TINY, weights=weights_file, environ={})
    torch.testing.assert_close(r.encode_texts(PROMPTS), direct.encode_texts(PROMPTS), atol=0, rtol=0)
    # the same with an explicit cache_dir
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "empty-hf-cache", moved)
    assert ClipRewardModel(TINY, "cached_tag", environ={}, cache_dir=moved).weights.origin == "cache"


def test_unknown_model_name() -> None:
    with pytest.raises(ClipModelError, match="unknown CLIP model 'ViT-B-33'; did you mean .*ViT-B-32"):
        ClipRewardModel("ViT-B-33", environ={})


# -- text-feature cache -----------------------------------------------------------------------------


def test_text_cache_hit_and_model_miss(weights_file, tmp_path, monkeypatch) -> None:
    ws = tmp_path / "ws"
    r = ClipRewardModel(TINY, weights=weights_file, environ={})
    first = r.text_features(PROMPTS + [PROMPTS[0]], cache=ws)
    files = sorted((ws / "cache" / "clip_text").glob("*.pt"))
    assert len(files) == 2 and not list((ws / "cache" / "clip_text").glob("*.tmp"))
    assert first.shape == (3, 32)
    torch.testing.assert_close(first[0], first[2])

    # a later run (a new model object) loads from the cache instead of encoding
    again = ClipRewardModel(TINY, weights=weights_file, environ={})

    def fail(*a, **k):
        raise AssertionError("encode_text called despite the cache")

    monkeypatch.setattr(again.model, "encode_text", fail)
    torch.testing.assert_close(again.text_features(PROMPTS, cache=ws), first[:2], atol=0, rtol=0)

    # another model name (same architecture and file) never reuses those features
    other = ClipRewardModel(TINY_OTHER, weights=weights_file, environ={})
    calls = []
    real = other.model.encode_text
    monkeypatch.setattr(other.model, "encode_text", lambda t: calls.append(len(t)) or real(t))
    other.text_features(PROMPTS, cache=ws)
    assert calls == [2] and len(list((ws / "cache" / "clip_text").glob("*.pt"))) == 4
    # a Workspace object finds the same folder
    from anyskill_tui.workspace import Workspace

    monkeypatch.setattr(again.model, "encode_text", fail)
    torch.testing.assert_close(again.text_features(PROMPTS, cache=Workspace(ws)), first[:2], atol=0, rtol=0)
    # other weights (a new file) miss too
    new_file = save_tiny_weights(tmp_path / "tiny2.pt", seed=3)
    third = ClipRewardModel(TINY, weights=new_file, environ={})
    assert third.weights_id != r.weights_id
    assert not torch.allclose(third.text_features(PROMPTS, cache=ws), first[:2])
    # random weights are never cached
    rnd = ClipRewardModel(TINY, pretrained=None, environ={})
    rnd.text_features(PROMPTS, cache=ws)
    assert len(list((ws / "cache" / "clip_text").glob("*.pt"))) == 6


def test_text_cache_file_format_and_corruption(tmp_path) -> None:
    cache = tc.TextFeatureCache(tmp_path / "c")
    assert tc.text_cache_dir(tmp_path) == tmp_path / "cache" / "clip_text"
    assert tc.cache_key("m", "w", "p") != tc.cache_key("m2", "w", "p") != tc.cache_key("m", "w2", "p")
    assert cache.load("m", "w", "p") is None
    f = F.normalize(torch.randn(8), dim=0)
    path = cache.save("m", "w", "p", f)
    assert path.parent == tmp_path / "c" and path.suffix == ".pt"
    torch.testing.assert_close(cache.load("m", "w", "p"), f)
    path.write_bytes(b"torn")
    assert cache.load("m", "w", "p") is None
    n = []
    out = cache.get_or_compute("m", "w", ["p"], lambda ps: n.append(ps) or torch.ones(len(ps), 8))
    assert n == [["p"]] and torch.equal(out, torch.ones(1, 8))
    assert torch.equal(cache.load("m", "w", "p"), torch.ones(8))


def test_from_model(weights_file) -> None:
    model = open_clip.create_model(TINY, pretrained=None)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    tok = open_clip.get_tokenizer(TINY)
    r = ClipRewardModel.from_model(model, tok, 32, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    ref = ClipRewardModel(TINY, weights=weights_file, environ={})
    frames = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(r.encode_images(frames), ref.encode_images(frames), atol=1e-6, rtol=0)
    assert r.weights_id is None and r.device == torch.device("cpu")


def test_package_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, anyskill_tui.core.reward as r, anyskill_tui.core.reward.text_cache\n"
        "assert 'open_clip' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
        "r.ClipRewardModel\n"
        "assert 'torch' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_matches_cpu(weights_file) -> None:
    """On CUDA the default autocast is bf16 (fp16 without bf16); features stay close to the fp32 CPU ones."""
    cpu = ClipRewardModel(TINY, weights=weights_file, environ={})
    gpu = ClipRewardModel(TINY, weights=weights_file, environ={}, device="cuda")
    assert gpu.autocast_dtype in (torch.bfloat16, torch.float16)
    frames = torch.rand(16, 3, 48, 48)
    idx = torch.randint(0, 2, (16,))
    text = gpu.text_features(PROMPTS)
    sim = gpu.similarity(frames.cuda(), text, idx.cuda())
    assert sim.device.type == "cuda" and sim.dtype == torch.float32
    torch.testing.assert_close(sim.cpu(), cpu.similarity(frames, cpu.encode_texts(PROMPTS), idx), atol=0.03, rtol=0)
