"""Config: merge order, and one clear error for every invalid setting."""

import glob
import os

import pytest
import yaml

from iared_video.config import ConfigError, flat_keys, get_cfg
from iared_video.methods import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_default_key_has_a_comment() -> None:
    path = os.path.join(ROOT, "iared_video", "config", "defaults.py")
    lines = open(path).read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("_C.") and "CfgNode()" not in line:
            assert lines[i - 1].lstrip().startswith("#"), f"key without a comment: {line}"


def test_yaml_then_opts_order(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("IARED:\n  THRESHOLD: 0.4\n  TAU: 0.3\n")
    cfg = load_config(str(path), ["IARED.THRESHOLD", "0.45"])
    assert cfg.IARED.THRESHOLD == 0.45 and cfg.IARED.TAU == 0.3


def test_unknown_key_names_nearest(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"IARED\.TRESHOLD.*nearest valid keys: IARED\.THRESHOLD"):
        load_config(None, ["IARED.TRESHOLD", "0.4"])
    path = tmp_path / "b.yaml"
    path.write_text("DATA:\n  NUM_FRAME: 8\n")
    with pytest.raises(ConfigError, match=r"DATA\.NUM_FRAME'.*nearest valid keys: DATA\.NUM_FRAMES"):
        load_config(str(path))


@pytest.mark.parametrize("opts, message", [
    (["DATA.NUM_FRAMES", "'eight'"], "DATA.NUM_FRAMES must be of type int"),
    (["TRAIN.ENABLE", "1"], "TRAIN.ENABLE must be of type bool"),
    (["IARED.NUM_GROUPS", "5"], "must divide the model depth 12"),
    (["DATA.TRAIN_CROP_SIZE", "100"], "DATA.TRAIN_CROP_SIZE=100 is not divisible by the patch size 16"),
    (["IARED.THRESHOLD", "1.0"], r"IARED.THRESHOLD must lie in \(0, 1\)"),
    (["IARED.THRESHOLD", "0.0"], r"IARED.THRESHOLD must lie in \(0, 1\)"),
    (["METHOD.NAME", "drop_atention"], "METHOD.NAME must be one of .*nearest: 'drop_attention'"),
    (["MODEL.MODEL_NAME", "deit", "METHOD.NAME", "drop_temporal_diff"], "temporal_diff needs a video model"),
    (["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_small_patch16_224", "IARED.NUM_GROUPS", "5"],
     "must divide the model depth 12"),
    (["TRAIN.ENABLE"], "KEY VALUE pairs"),
    (["VISUALIZE.ANIMATION", "'avi'"], "VISUALIZE.ANIMATION must be one of"),
    (["VISUALIZE.ALPHA", "1.5"], r"VISUALIZE.ALPHA must lie in \[0, 1\]"),
    (["DYNAMICVIT.BACKBONE_LR_SCALE", "-0.1"], "DYNAMICVIT.BACKBONE_LR_SCALE must be a finite number >= 0"),
    (["GUMBEL.KEEP_RATE", "0.0"], r"GUMBEL.KEEP_RATE must lie in \(0, 1\]"),
    (["GUMBEL.RATIO_WEIGHT", "-1.0"], "GUMBEL.RATIO_WEIGHT must be a finite number >= 0"),
])
def test_invalid_settings_fail_with_one_clear_message(opts: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, opts)


def test_float_key_accepts_int_and_config_is_frozen() -> None:
    cfg = load_config(None, ["IARED.TAU", "1"])
    assert cfg.IARED.TAU == 1.0 and isinstance(cfg.IARED.TAU, float)
    with pytest.raises(AttributeError):
        cfg.IARED.TAU = 2.0


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)))
def test_shipped_configs_load(path: str) -> None:
    """Every key the yaml sets holds the yaml's value (read here with PyYAML); every other key keeps its default."""
    cfg, defaults = flat_keys(load_config(path)), flat_keys(get_cfg())
    with open(path) as f:
        written = flat_keys(yaml.safe_load(f) or {})
    assert written and set(written) <= set(defaults)
    for key, default in defaults.items():
        want = written.get(key, default)
        assert cfg[key] == (list(want) if isinstance(want, tuple) else want), key


@pytest.mark.parametrize("opts, message", [
    (["TRAIN.AMP_DTYPE", "bf16"], r"TRAIN.AMP_DTYPE must be one of \['bfloat16', 'float16'\], got 'bf16'"),
    (["BENCHMARK.KEEP_SCHEDULE", "geometrc"], r"BENCHMARK.KEEP_SCHEDULE .*got 'geometrc'; nearest: 'geometric'"),
    (["BENCHMARK.CPU_LINEAR", "mkldnn"], r"BENCHMARK.CPU_LINEAR must be one of \['aten', 'onednn'\]"),
    (["BENCHMARK.PRECISIONS", "['fp32', 'fp61']"], r"BENCHMARK.PRECISIONS items .*got 'fp61'; nearest: 'fp16'"),
    (["BENCHMARK.METHODS_AT_KEEP", "['drop_random', 'iared']"], r"BENCHMARK.METHODS_AT_KEEP items .*'iared'"),
    (["DATA.IMAGE_INTERPOLATION", "bicubc"], r"DATA.IMAGE_INTERPOLATION .*nearest: 'bicubic'"),
    (["IARED.INTERPRETER_OPTIMIZER", "adamw2"], r"IARED.INTERPRETER_OPTIMIZER must be one of"),
    (["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_smal_patch16_224"],
     r"MODEL.ARCH 'deit_smal_patch16_224' is not a timm model.*nearest: \['deit_small_patch16_224'"),
])
def test_every_choice_key_fails_in_the_one_validation_pass(opts: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, opts)


def test_validation_builds_no_model(monkeypatch) -> None:
    """Depth and patch of standard timm names come from the arch tables: ``timm.create_model`` is never called."""
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError("config validation built a model")

    monkeypatch.setattr(timm, "create_model", refuse)
    with pytest.raises(ConfigError, match="must divide the model depth 24"):
        load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_large_patch16_224", "IARED.NUM_GROUPS", "5"])
    with pytest.raises(ConfigError, match="not divisible by the patch size 32"):
        load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_base_patch32_224",
                           "DATA.TRAIN_CROP_SIZE", "48"])
    assert load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "vit_micro_patch16"]).MODEL.ARCH


def test_is_video_and_device_are_decided_in_one_place() -> None:
    import torch

    from iared_video.config import device_of, is_video

    assert is_video(load_config()) and not is_video(load_config(None, ["MODEL.MODEL_NAME", "deit"]))
    assert device_of(load_config(None, ["DEVICE", "cpu"])) == torch.device("cpu")
    assert device_of(load_config(None, ["DEVICE", "cuda"]), local_rank=1) == torch.device("cuda", 1)
    auto = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert device_of(load_config(None, ["DEVICE", "auto"])) == auto


def test_conv_stem_widths_are_checked_before_any_work() -> None:
    """``MODEL.STEM_CHANNELS``: an image model, stages that do not divide the patch, an even window: one error each."""
    base = ["MODEL.MODEL_NAME", "timesformer", "MODEL.PATCH_FRAMES", "3", "DATA.TRAIN_CROP_SIZE", "32",
            "DATA.TEST_CROP_SIZE", "32"]
    assert list(load_config(None, [*base, "MODEL.STEM_CHANNELS", "[16, 48]"]).MODEL.STEM_CHANNELS) == [16, 48]
    with pytest.raises(ConfigError, match=r"STEM_CHANNELS must be positive integers whose 5 stride-2 stages"):
        load_config(None, [*base, "MODEL.STEM_CHANNELS", "[8, 8, 8, 8, 8]"])
    with pytest.raises(ConfigError, match=r"STEM_CHANNELS needs an odd MODEL.PATCH_FRAMES"):
        load_config(None, [*base, "MODEL.PATCH_FRAMES", "2", "MODEL.STEM_CHANNELS", "[16]"])
    with pytest.raises(ConfigError, match=r"STEM_CHANNELS needs MODEL.MODEL_NAME timesformer"):
        load_config(None, ["MODEL.MODEL_NAME", "deit", "MODEL.STEM_CHANNELS", "[16]"])
