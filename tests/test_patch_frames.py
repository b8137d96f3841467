"""MODEL.PATCH_FRAMES: per-frame patch tokens that each embed a window of frames (``FramePatchEmbed``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_weights import official_checkpoint, randomise, tiny_timesformer

from iared_video.models import NoDropPolicy, PolicyModel, TimeSformer
from iared_video.models.backbones import FramePatchEmbed
from iared_video.models.flops import patch_embed_macs
from iared_video.models.weights import CheckpointMismatchError, load_pretrained


def _by_hand(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, before: int) -> torch.Tensor:
    """Token of frame t = bias + sum_j conv2d(frame clamp(t - before + j), weight[:, :, j]), as (B, T, N, C)."""
    frames, patch = x.shape[2], weight.shape[-1]
    out = []
    for t in range(frames):
        acc = bias[None, :, None, None]
        for j in range(weight.shape[2]):
            source = min(max(t - before + j, 0), frames - 1)
            acc = acc + F.conv2d(x[:, :, source], weight[:, :, j], stride=patch)
        out.append(acc.flatten(2).transpose(1, 2))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("frames,before", [(1, 0), (2, 0), (3, 1), (4, 1)])
def test_each_token_embeds_its_window_with_the_end_frames_repeated(frames, before):
    embed = FramePatchEmbed(img_size=32, patch_size=16, in_chans=3, embed_dim=8, frames=frames)
    x = torch.randn(2, 3, 5, 32, 32, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        got = embed(x)
        want = _by_hand(x, embed.proj.weight, embed.proj.bias, before)
    assert got.shape == (2, 5, 4, 8)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_frame_window_of_one_is_timesformers_per_frame_embedding():
    one = tiny_timesformer(img_size=32, patch=16)
    assert not isinstance(one.patch_embed, FramePatchEmbed)  # official checkpoints keep their 4-d key
    window = TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                         patch_frames=1)
    assert window.patch_embed.proj.weight.shape == one.patch_embed.proj.weight.shape == (64, 3, 16, 16)


#: Per-frame coefficients of the 3-frame window (t - 1, t, t + 1) under each inflation rule, worked by hand:
#: mean 1/3 each; central only frame t; mean_diff 1/3 + (-1, 0, 1).
WINDOW_COEFFICIENTS = {"mean": (1 / 3, 1 / 3, 1 / 3), "central": (0.0, 1.0, 0.0), "mean_diff": (-2 / 3, 1 / 3, 4 / 3)}


def _window_input(clip: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """Frame t replaced by sum_j c_j * frame clamp(t - 1 + j): what a per-frame model must see to embed as the
    window model does (the embedding is linear in the frames)."""
    length = clip.shape[2]
    frames = [sum(c * clip[:, :, min(max(t - 1 + j, 0), length - 1)] for j, c in enumerate(coefficients))
              for t in range(length)]
    return torch.stack(frames, dim=2)


@pytest.mark.parametrize("rule", sorted(WINDOW_COEFFICIENTS))
def test_inflation_spreads_2d_patch_weights_over_the_window(tmp_path, rule):
    """A per-frame (4-d) checkpoint loaded into a 3-frame-window model: weights c_j W on frame j, so the window
    model on a clip is the per-frame model on the clip's window sums, and on a static clip the same model."""
    state = randomise(tiny_timesformer(img_size=32, patch=16).state_dict())
    path = tmp_path / "per_frame.pyth"
    torch.save(official_checkpoint(state), path)
    per_frame = PolicyModel(tiny_timesformer(img_size=32, patch=16), NoDropPolicy(), 1).eval()
    window = PolicyModel(TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2,
                               num_heads=4, patch_frames=3, patch_inflation=rule), NoDropPolicy(), 1).eval()
    load_pretrained(per_frame, path)
    report = load_pretrained(window, path)
    key = "backbone.patch_embed.proj.weight"
    assert report.reshaped == [key] and f"inflated over 3 frames ({rule})" in report.notes[key]
    weight = window.backbone.patch_embed.proj.weight.detach()
    coefficients = WINDOW_COEFFICIENTS[rule]
    for j, c in enumerate(coefficients):
        torch.testing.assert_close(weight[:, :, j], c * state["patch_embed.proj.weight"])
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    static = clip[:, :, :1].expand(-1, -1, 4, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(window(clip), per_frame(_window_input(clip, coefficients)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(window(static), per_frame(static), atol=1e-5, rtol=1e-5)
        if rule != "central":
            assert not torch.allclose(window(clip), per_frame(clip), atol=1e-3)  # motion changes the tokens


def test_unknown_inflation_rule_is_refused():
    with pytest.raises(ValueError, match="inflation must be one of"):
        FramePatchEmbed(32, 16, 3, 8, frames=3, inflation="sum")


def test_window_checkpoint_into_another_window_names_the_key(tmp_path):
    state = TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                        patch_frames=3).state_dict()
    path = tmp_path / "window3.pyth"
    torch.save(official_checkpoint(state), path)
    model = PolicyModel(TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2,
                              num_heads=4, patch_frames=2), NoDropPolicy(), 1)
    with pytest.raises(CheckpointMismatchError, match=r"patch_embed\.proj\.weight: checkpoint \(64, 3, 3, 16, 16\)"):
        load_pretrained(model, path)


def test_patch_embedding_macs_count_every_frame_of_the_window():
    """C_out * C_in * k * p * p MACs per token, worked out: 64 * 3 * 3 * 16 * 16 = 147456."""
    model = TimeSformer(num_classes=5, img_size=32, num_frames=4, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                        patch_frames=3)
    assert patch_embed_macs(model, 1) == 147456
    assert patch_embed_macs(tiny_timesformer(img_size=32, patch=16), 1) == 49152


def test_conv_stem_keeps_the_token_grid():
    """``MODEL.STEM_CHANNELS``: the stem's tokens sit on the patch grid (a token's stem sees only its own patch's
    neighbourhood: changing one far patch leaves a token unchanged); a stem it cannot build is a ValueError."""
    from iared_video.models.backbones import ConvStemEmbed

    embed = ConvStemEmbed(img_size=64, patch_size=16, in_chans=3, embed_dim=24, frames=3, channels=(8, 16)).eval()
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = embed(x)
        far = x.clone()
        far[:, :, :, 48:, 48:] += 1.0  # the bottom-right patch only
        moved = embed(far)
    assert tokens.shape == (1, 4, 16, 24)
    torch.testing.assert_close(moved[:, :, 0], tokens[:, :, 0])  # the top-left token: 2 patches away
    assert not torch.allclose(moved[:, :, 15], tokens[:, :, 15])
    with pytest.raises(ValueError, match="conv stem"):
        ConvStemEmbed(img_size=64, patch_size=16, in_chans=3, embed_dim=24, frames=3, channels=(8, 16, 32, 64, 64))


@pytest.mark.parametrize("frames,channels", [(3, (8, 16)), (1, (8, 16, 32)), (3, (4,)), (1, (4, 8, 8, 8))])
def test_conv_stem_macs_are_fvcores(frames, channels):
    """The analytic count of every stem shape (first stride 8, 2, 16 and 1) is fvcore's, per token."""
    from iared_video.models.flops import fvcore_gflops

    model = TimeSformer(num_classes=5, img_size=64, num_frames=4, patch_size=16, embed_dim=24, depth=1, num_heads=2,
                        patch_frames=frames, stem_channels=channels)
    x = torch.randn(1, 3, 4, 64, 64)
    want = fvcore_gflops(model.patch_embed, x) * 1e9 / 64  # 4 frames x 16 patches
    assert patch_embed_macs(model, 64) / 64 == pytest.approx(want, rel=1e-9)


def test_distilled_stem_imitates_the_linear_embedding_and_keeps_the_rest(tmp_path):
    """``tools/distill_stem.py``: the stem is regressed onto the checkpoint's linear patch embedding on training
    clips (its error falls), every other tensor is the checkpoint's, and the written file loads whole as
    ``MODEL.PRETRAINED`` of the stem model; no stem or no checkpoint is a config error."""
    from iared_video.config import ConfigError
    from iared_video.datasets.loader import construct_loader
    from iared_video.engine.checkpoint import save_checkpoint
    from iared_video.experiments import distill_stem
    from iared_video.experiments.main_job import SYNTHETIC_CONFIG_DIR
    from iared_video.methods import build_model, load_config
    from iared_video.synthetic import generate_video_dataset

    data = tmp_path / "v"
    generate_video_dataset(str(data), num_videos=6, seed=0, num_classes=2)
    opts = ["MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "2", "MODEL.NUM_HEADS", "2", "MODEL.NUM_CLASSES", "2",
            "DATA.NUM_FRAMES", "4", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32",
            "DATA.TEST_CROP_SIZE", "32", "DATA.PATH_TO_DATA_DIR", str(data), "TRAIN.BATCH_SIZE", "2"]
    cfg_path = str(SYNTHETIC_CONFIG_DIR / "tsf_tiny_dense.yaml")
    torch.manual_seed(0)
    linear = build_model(load_config(cfg_path, [*opts, "MODEL.PRETRAINED", ""]))
    with torch.no_grad():  # a smooth linear embedding (constant over 4x4 pixels), which a stem can represent
        blocks = torch.randn(32, 3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.05
        linear.backbone.patch_embed.proj.weight.copy_(blocks.repeat_interleave(4, 3).repeat_interleave(4, 4))
    teacher_file, out = str(tmp_path / "linear.pyth"), str(tmp_path / "stem.pyth")
    save_checkpoint(teacher_file, {"model_state": linear.state_dict()})
    stem_opts = [*opts, "MODEL.STEM_CHANNELS", "[16, 32]"]
    summary = distill_stem.main(["--cfg", cfg_path, "--out", out, "--steps", "80", "--lr", "1e-2", *stem_opts,
                                 "MODEL.PRETRAINED", teacher_file])
    assert summary["steps"] == 80 and summary["teacher"] == teacher_file

    written = torch.load(out, weights_only=True)["model_state"]
    kept = {k: v for k, v in linear.state_dict().items() if "patch_embed" not in k}
    assert all(torch.equal(written[k], v) for k, v in kept.items())
    assert any(k.startswith("backbone.patch_embed.stem.") for k in written)
    loaded = build_model(load_config(cfg_path, [*stem_opts, "MODEL.PRETRAINED", out]))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in written.items())

    fresh = build_model(load_config(cfg_path, [*stem_opts, "MODEL.PRETRAINED", teacher_file])).eval()
    clip = next(iter(construct_loader(load_config(cfg_path, opts), "val")))["inputs"]  # clips not trained on
    with torch.no_grad():
        target = linear.backbone.patch_embed(clip)
        error = [F.mse_loss(m.backbone.patch_embed.eval()(clip), target).item() for m in (loaded, fresh)]
    assert error[0] < 0.5 * error[1]
    with pytest.raises(ConfigError, match="needs a conv stem"):
        distill_stem.main(["--cfg", cfg_path, "--out", out, *opts, "MODEL.PRETRAINED", teacher_file])
    with pytest.raises(ConfigError, match="needs MODEL.PRETRAINED"):
        distill_stem.main(["--cfg", cfg_path, "--out", out, *stem_opts, "MODEL.PRETRAINED", ""])
