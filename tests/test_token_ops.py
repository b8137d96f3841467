"""The token-ops layer: one attention primitive whose packed, batched and explicit paths agree."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Attention, Block

from iared_video.models.backbones import dense_forward
from iared_video.models.packed import PackedSeqs
from iared_video.models.token_ops import attention, block_forward, class_attention

DIM, HEADS = 16, 2


def _attn(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(DIM, HEADS, qkv_bias=True).eval()


def _by_hand(attn: Attention, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``proj(softmax(q k^T / sqrt(d) + bias) v)`` written out on ``(B, L, C)``."""
    batch, length, _ = x.shape
    q, k, v = attn.qkv(x).view(batch, length, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) * (DIM // HEADS) ** -0.5
    if bias is not None:
        logits = logits + bias[:, None, None, :]
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, DIM)
    return attn.proj(out)


@pytest.mark.parametrize("lengths", [[5, 5], [3, 7, 2], [40, 1]])  # equal, padded and per-sample paths
def test_packed_attention_with_key_bias_matches_the_written_out_softmax(lengths) -> None:
    attn = _attn()
    seqs = PackedSeqs.from_lengths(lengths, torch.device("cpu"))
    x = torch.randn(seqs.total, DIM)
    bias = torch.rand(seqs.total).log()
    with torch.no_grad():
        packed = attention(attn, x, seqs, key_bias=bias).out
        for xs, bs, got in zip(x.split(lengths), bias.split(lengths), packed.split(lengths)):
            torch.testing.assert_close(got, _by_hand(attn, xs[None], bs[None])[0], atol=1e-5, rtol=1e-5)


def test_batched_fused_explicit_and_class_row_agree() -> None:
    attn = _attn(1)
    x, bias = torch.randn(3, 6, DIM), torch.randn(3, 6)
    with torch.no_grad():
        fused = attention(attn, x, key_bias=bias, class_row=True, keys=True)
        explicit = attention(attn, x, key_bias=bias, probs=True)
        seqs = PackedSeqs.from_lengths([6] * 3, x.device)
        packed = attention(attn, x.reshape(-1, DIM), seqs, key_bias=bias.flatten(), class_row=True)
    torch.testing.assert_close(fused.out, _by_hand(attn, x, bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit.out, fused.out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.class_attention, explicit.probs[:, :, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(packed.class_attention, fused.class_attention)
    assert fused.keys.shape == (3, 6, HEADS, DIM // HEADS) and explicit.probs.shape == (3, HEADS, 6, 6)


def test_class_row_on_uneven_packed_sequences_is_each_samples_own() -> None:
    attn = _attn(2)
    lengths = [4, 2, 5]
    seqs = PackedSeqs.from_lengths(lengths, torch.device("cpu"))
    x = torch.randn(seqs.total, DIM)
    with torch.no_grad():
        rows = attention(attn, x, seqs, output=False, class_row=True).class_attention  # (B, H, max_len)
        for b, xs in enumerate(x.split(lengths)):
            own = attention(attn, xs[None], probs=True).probs[0, :, 0]
            torch.testing.assert_close(rows[b, :, :lengths[b]], own, atol=1e-6, rtol=1e-5)
            assert (rows[b, :, lengths[b]:] == 0).all()


def test_dense_block_forward_is_timms_block_and_class_attention_runs_the_earlier_blocks() -> None:
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(Block(DIM, HEADS, qkv_bias=True) for _ in range(3)).eval()
    x = torch.randn(2, 7, DIM)
    with torch.no_grad():
        torch.testing.assert_close(block_forward(blocks[0], x)[0], blocks[0](x), atol=1e-6, rtol=1e-5)
        after = blocks[1](blocks[0](x))
        want = attention(blocks[2].attn, blocks[2].norm1(after), probs=True).probs[:, :, 0].mean(1)
        torch.testing.assert_close(class_attention(blocks, x, 2), want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="does not exist"):
        class_attention(blocks, x, 3)


def test_dense_forward_refuses_attention_maps_of_divided_blocks() -> None:
    from iared_video.models.backbones import TimeSformer

    backbone = TimeSformer(num_classes=3, img_size=16, num_frames=2, patch_size=8, embed_dim=DIM, depth=1,
                           num_heads=HEADS, attention_type="divided_space_time").eval()
    x = torch.randn(1, 3, 2, 16, 16)
    with torch.no_grad():
        assert dense_forward(backbone, x).logits.shape == (1, 3)
        with pytest.raises(ValueError, match="divided space-time"):
            dense_forward(backbone, x, probs=True)
