"""Config: merge order, and one clear error for every invalid setting."""

import glob
import os

import pytest

from iared_video.config import ConfigError, flat_keys, get_cfg, load_config

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
    (["IARED.POLICY", "attn"], "IARED.POLICY must be one of"),
    (["MODEL.MODEL_NAME", "deit", "IARED.POLICY", "temporal_diff"], "temporal_diff needs a video model"),
    (["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_small_patch16_224", "IARED.NUM_GROUPS", "5"],
     "must divide the model depth 12"),
    (["TRAIN.ENABLE"], "KEY VALUE pairs"),
    (["VISUALIZE.ANIMATION", "'avi'"], "VISUALIZE.ANIMATION must be one of"),
    (["VISUALIZE.ALPHA", "1.5"], r"VISUALIZE.ALPHA must lie in \[0, 1\]"),
    (["DYNAMICVIT.BACKBONE_LR_SCALE", "-0.1"], "DYNAMICVIT.BACKBONE_LR_SCALE must be a finite number >= 0"),
    (["IARED.GUMBEL_KEEP_RATE", "0.0"], r"IARED.GUMBEL_KEEP_RATE must lie in \(0, 1\]"),
    (["IARED.GUMBEL_RATIO_WEIGHT", "-1.0"], "IARED.GUMBEL_RATIO_WEIGHT must be a finite number >= 0"),
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
    cfg = load_config(path)
    assert set(flat_keys(cfg)) == set(flat_keys(get_cfg()))
