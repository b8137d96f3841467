"""Policy heatmaps: token order (t, y, x) -> pixels of the right frame."""

import pytest
import torch

from iared_video.interpret.heatmap import keep_masks, policy_heatmaps, tokens_to_grid


@pytest.mark.parametrize("t,y,x", [(0, 0, 0), (2, 1, 3), (3, 2, 0)])
def test_one_patch_lands_on_its_pixels(t, y, x):
    grid, patch = (4, 3, 5), 8  # T, h, w with h != w so a y/x swap shows
    frames, h, w = grid
    scores = torch.zeros(2, frames * h * w)
    scores[1, t * h * w + y * w + x] = 0.9
    maps = policy_heatmaps([scores, scores * 0.5], grid, (h * patch, w * patch), mode="nearest")
    assert maps.shape == (2, 2, frames, h * patch, w * patch)
    expected = torch.zeros(frames, h * patch, w * patch)
    expected[t, y * patch:(y + 1) * patch, x * patch:(x + 1) * patch] = 0.9
    torch.testing.assert_close(maps[1, 0], expected)
    torch.testing.assert_close(maps[1, 1], expected * 0.5)
    assert maps[0].abs().sum() == 0


def test_image_grid_and_bilinear():
    scores = torch.rand(1, 4 * 4)
    maps = policy_heatmaps([scores], (1, 4, 4), (32, 32), mode="bilinear")
    assert maps.shape == (1, 1, 1, 32, 32)
    assert maps.min() >= scores.min() - 1e-6 and maps.max() <= scores.max() + 1e-6


def test_keep_masks_and_errors():
    keep = torch.tensor([[True, False, True, True]])
    masks = keep_masks([keep], (1, 2, 2), (4, 4))
    assert masks.dtype == torch.bool and not masks[0, 0, 0, :2, 2:].any() and masks[0, 0, 0, :2, :2].all()
    with pytest.raises(ValueError):
        tokens_to_grid(torch.zeros(1, 5), (1, 2, 2))
    with pytest.raises(ValueError):
        policy_heatmaps([keep.float()], (1, 2, 2), (4, 4), mode="cubic")
