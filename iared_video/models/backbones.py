"""Vision transformer backbones that expose embedding, blocks and head separately.

Both backbones keep their parameter names identical to the checkpoints users
hold: the TimeSformer (joint or divided space-time attention) mirrors the official
TimeSformer keys (after the ``model.`` prefix), the image backbone *is* a timm
ViT/DeiT's modules, so a timm state dict loads as it is.

Patch-token order (``N`` counts patch tokens only):
    video: ``n = t * (h * w) + y * w + x`` (frame-major, then rows, then columns);
    image: ``n = y * w + x``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Format, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from iared_video.config.archs import resolve_arch
from iared_video.config.choices import PATCH_INFLATIONS
from iared_video.models.divided import ATTENTION_TYPES, DividedBlock
from iared_video.models.token_ops import block_forward

__all__ = ["ConvStemEmbed", "DenseTrace", "dense_forward", "Backbone", "BackboneBlock", "backbone_blocks", "Embedded",
           "FramePatchEmbed", "TimeSformer", "TimmViT", "check_input"]


@dataclass
class Embedded:
    """Backbone input after embedding.

    Attributes:
        prefix: ``(B, P, C)`` class (and distillation/register) tokens, never dropped.
        patches: ``(B, N, C)`` patch tokens with positional (and temporal) embedding.
        raw: ``(B, N, C)`` patch tokens before any positional embedding.
        grid: ``(T, h, w)`` patch grid; ``T = 1`` for images.
    """

    prefix: Tensor
    patches: Tensor
    raw: Tensor
    grid: tuple[int, int, int]


def check_input(x: Tensor, ndim: int, channels: int, patch: int, layout: str) -> None:
    """Raise a clear ValueError when ``x`` cannot enter the model."""
    if x.ndim != ndim:
        raise ValueError(f"expected a {ndim}-d input laid out as {layout}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"expected {channels} input channels ({layout}), got {x.shape[1]} in shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"input size {height}x{width} is not divisible by the patch size {patch}")


class FramePatchEmbed(nn.Module):
    """One patch token per frame and position, embedding a window of ``frames`` frames around its own.

    A ``Conv3d`` of kernel ``(frames, p, p)`` and stride ``(1, p, p)``: the token of frame ``t`` sees frames
    ``t - (frames - 1) // 2 .. t + frames // 2`` (the first and last frame repeated at the ends), so the
    token grid stays ``(T, h, w)`` while each token carries the local motion at its patch. ``frames = 1``
    is TimeSformer's per-frame embedding (``TimeSformer`` then keeps timm's ``PatchEmbed``). ``inflation`` is how
    ``load_pretrained`` spreads 2-d weights over the window (``PATCH_INFLATIONS``, see ``models/weights.py``).
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, frames: int,
                 inflation: str = "mean_diff") -> None:
        super().__init__()
        if frames < 1:
            raise ValueError(f"a patch must cover at least one frame, got {frames}")
        if inflation not in PATCH_INFLATIONS:
            raise ValueError(f"inflation must be one of {PATCH_INFLATIONS}, got {inflation!r}")
        self.frames, self.inflation = frames, inflation
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv3d(in_chans, embed_dim, (frames, patch_size, patch_size), stride=(1, patch_size, patch_size))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, T, h * w, embed_dim)``."""
        before, after = (self.frames - 1) // 2, self.frames // 2
        padded = torch.cat([x[:, :, :1].expand(-1, -1, before, -1, -1), x,
                            x[:, :, -1:].expand(-1, -1, after, -1, -1)], dim=2)
        return rearrange(self.proj(padded), "b c t h w -> b t (h w) c")


class ConvStemEmbed(nn.Module):
    """A convolutional stem in place of the single linear patch projection (Xiao et al., NeurIPS 2021, "Early
    convolutions help transformers see better"), in space-time.

    A ``Conv3d`` of kernel ``(frames, s, s)`` and stride ``(1, s, s)`` into ``channels[0]`` (the ends of the clip
    repeated in time, as ``FramePatchEmbed``), then one ``Conv3d`` of kernel 3 and stride ``(1, 2, 2)`` per further
    width (``channels[1:]``, then ``embed_dim``), all but the last followed by BatchNorm and ReLU;
    ``s = patch_size / 2 ** len(channels)``. The token grid is the patch embedding's ``(T, H / p, W / p)``, so
    everything that scores, drops or merges tokens is unchanged; only the embedding is non-linear and local.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, frames: int,
                 channels: Sequence[int]) -> None:
        super().__init__()
        downs = 2 ** len(channels)
        if not channels or patch_size % downs or frames < 1 or frames % 2 == 0:
            raise ValueError(f"a conv stem needs widths whose {len(channels)} stride-2 stages divide the patch size "
                             f"{patch_size} and an odd frame window, got {list(channels)} and {frames}")
        first = patch_size // downs
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        widths = [*channels, embed_dim]
        layers: list[nn.Module] = [nn.Conv3d(in_chans, widths[0], (frames, first, first), stride=(1, first, first),
                                             padding=((frames - 1) // 2, 0, 0), padding_mode="replicate")]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.BatchNorm3d(cin), nn.ReLU(inplace=True), nn.Conv3d(cin, cout, 3, (1, 2, 2), padding=1)]
        self.stem = nn.Sequential(*layers)

    def macs_per_token(self) -> int:
        """Multiply-accumulates per output token: each layer's per-position MACs times its positions per token
        (4 per stride-2 stage still to come), an affine BatchNorm at two per element (fvcore's eval-mode count)."""
        macs, positions = 0, 4 ** (len(self.stem) // 3)
        for index, layer in enumerate(self.stem):
            if isinstance(layer, nn.Conv3d):
                positions //= 4 if index else 1  # every conv after the patchifying one halves h and w
                macs += positions * layer.weight.numel()
            elif isinstance(layer, nn.BatchNorm3d):
                macs += positions * layer.num_features * (2 if layer.affine else 1)
        return macs

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, T, h * w, embed_dim)``."""
        return rearrange(self.stem(x), "b c t h w -> b t (h w) c")


class TimeSformer(nn.Module):
    """TimeSformer with joint (JointST) or divided (divST) space-time attention, official key layout.

    Args:
        num_classes: classifier outputs.
        img_size: training crop size; other sizes interpolate the positional embedding.
        num_frames: frames per clip; other counts interpolate the temporal embedding.
        patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio: ViT shape.
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth, increasing linearly over blocks.
        pos_embed_std, time_embed_std: initial std of the positional and temporal embeddings
            (TimeSformer's 0.02 and zeros by default; larger values help training from scratch).
        attention_type: ``"joint_space_time"`` (timm blocks over all tokens) or ``"divided_space_time"``
            (``DividedBlock``: temporal then spatial attention; ``temporal_fc`` starts at zero after the
            first block, as in TimeSformer).
        patch_frames: frames each patch token embeds (``FramePatchEmbed``); 1 is TimeSformer.
        patch_inflation: how 2-d patch weights inflate to ``patch_frames`` frames (``FramePatchEmbed``).
        stem_channels: widths of a convolutional stem in place of the linear patch embedding (``ConvStemEmbed``,
            over ``patch_frames`` frames); empty: the linear embedding.
    """

    num_prefix_tokens: int = 1

    def __init__(self, num_classes: int = 400, img_size: int = 224, num_frames: int = 8, patch_size: int = 16,
                 in_chans: int = 3, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 pos_embed_std: float = 0.02, time_embed_std: float = 0.0,
                 attention_type: str = "joint_space_time", patch_frames: int = 1,
                 patch_inflation: str = "mean_diff", stem_channels: Sequence[int] = ()) -> None:
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}")
        self.embed_dim, self.num_frames, self.in_chans = embed_dim, num_frames, in_chans
        self.attention_type = attention_type
        self.patch_embed: PatchEmbed | FramePatchEmbed | ConvStemEmbed = (
            ConvStemEmbed(img_size, patch_size, in_chans, embed_dim, patch_frames, stem_channels) if stem_channels
            else PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False) if patch_frames == 1
            else FramePatchEmbed(img_size, patch_size, in_chans, embed_dim, patch_frames, patch_inflation))
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(self._block(embed_dim, num_heads, mlp_ratio, r, norm) for r in rates)
        self.norm = norm(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=pos_embed_std)
        if time_embed_std > 0:
            trunc_normal_(self.time_embed, std=time_embed_std)
        self.apply(_init_linear)
        for block in self.blocks[1:]:
            if isinstance(block, DividedBlock):
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)

    def _block(self, dim: int, heads: int, mlp_ratio: float, drop_path: float,
               norm: Callable[[int], nn.Module]) -> nn.Module:
        if self.attention_type == "divided_space_time":
            return DividedBlock(dim, heads, mlp_ratio, qkv_bias=True, drop_path=drop_path, norm_eps=1e-6)
        # timm calls norm_layer(dim) and accepts any such constructor; its hint (type[nn.Module]) rejects a partial
        return Block(dim, heads, mlp_ratio, qkv_bias=True, drop_path=drop_path, norm_layer=norm)  # type: ignore[arg-type]

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def embed(self, x: Tensor) -> Embedded:
        """Embed a clip ``(B, C, T, H, W)`` into class and patch tokens."""
        check_input(x, 5, self.in_chans, self.patch_size, "(B, C, T, H, W)")
        batch, _, frames, height, width = x.shape
        h, w = height // self.patch_size, width // self.patch_size
        if isinstance(self.patch_embed, (FramePatchEmbed, ConvStemEmbed)):
            raw = rearrange(self.patch_embed(x), "b t n c -> (b t) n c")
        else:
            raw = self.patch_embed(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, h*w, C)
        pos = resample_abs_pos_embed(self.pos_embed, (h, w), num_prefix_tokens=1)
        time: Tensor = self.time_embed
        if frames != time.shape[1]:
            time = F.interpolate(time.transpose(1, 2), size=frames, mode="linear", align_corners=False).transpose(1, 2)
        per_frame = rearrange(raw, "(b t) n c -> b t n c", b=batch)
        patches = per_frame + pos[:, None, 1:] + time[:, :, None]
        prefix = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        return Embedded(prefix, rearrange(patches, "b t n c -> b (t n) c"),
                        rearrange(per_frame, "b t n c -> b (t n) c"), (frames, h, w))

    def forward_head(self, prefix: Tensor) -> Tensor:
        """Logits from the final class token(s) ``(B, P, C)``."""
        return self.head(self.head_drop(self.norm(prefix[:, 0])))


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TimmViT(nn.Module):
    """Any timm ViT/DeiT (class-token pooling, standard pre-norm blocks) with timm's own keys.

    The timm model's modules and parameters are registered on this module under
    their timm names, so ``load_state_dict`` takes a timm/DeiT state dict as is.
    Distilled models (class + distillation token) average their two heads, as
    DeiT does at test time. ``pos_embed_std`` redraws the positional embedding
    with that std (None keeps timm's own initialisation, std 0.02).
    """

    # registered from the timm model in __init__ (add_module / register_parameter), declared for the type checker
    patch_embed: PatchEmbed
    blocks: nn.Sequential
    norm: nn.Module
    head: nn.Module
    _net: VisionTransformer

    def __init__(self, arch: str, num_classes: int, img_size: int | None = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, pos_embed_std: float | None = None) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"img_size": img_size} if img_size else {}
        base, shape = resolve_arch(arch)
        net = cast(VisionTransformer, timm.create_model(
            base, pretrained=False, **shape, num_classes=num_classes, drop_rate=drop_rate,
            drop_path_rate=drop_path_rate, dynamic_img_size=True, **kwargs))
        if pos_embed_std is not None and net.pos_embed is not None:
            trunc_normal_(net.pos_embed, std=pos_embed_std)
        self._adopt(net, arch)

    @classmethod
    def from_timm(cls, net: VisionTransformer, arch: str = "") -> TimmViT:
        """Wrap a timm ViT/DeiT the user built or loaded: its modules and weights are used as they are (no copy).

        Its patch embedding is switched to the layout timm builds for ``dynamic_img_size=True`` (tokens on the
        patch grid, any input size divisible by the patch), which ``embed`` reads.
        """
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        setattr(net, "dynamic_img_size", True)  # noqa: B010 (timm types it Final; its forward reads it)
        net.patch_embed.strict_img_size = False
        net.patch_embed.flatten, net.patch_embed.output_fmt = False, Format.NHWC
        self._adopt(net, arch or type(net).__name__)
        return self

    def _adopt(self, net: VisionTransformer, arch: str) -> None:
        """Register ``net``'s modules and parameters here under timm's names."""
        _check_supported(net, arch)
        for name, child in net.named_children():
            self.add_module(name, child)
        for name, param in net.named_parameters(recurse=False):
            self.register_parameter(name, param)
        object.__setattr__(self, "_net", net)  # timm's own embedding/head code, not a registered child
        self.arch, self.embed_dim, self.num_prefix_tokens = arch, net.embed_dim, net.num_prefix_tokens
        self.in_chans = net.patch_embed.proj.in_channels

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def embed(self, x: Tensor) -> Embedded:
        """Embed images ``(B, C, H, W)`` with timm's positional-embedding code."""
        check_input(x, 4, self.in_chans, self.patch_size, "(B, C, H, W)")
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        raw = self.patch_embed(x)  # dynamic_img_size keeps (B, h, w, C)
        tokens = self._net.norm_pre(self._net._pos_embed(raw))
        p = self.num_prefix_tokens
        return Embedded(tokens[:, :p], tokens[:, p:], rearrange(raw, "b h w c -> b (h w) c"), (1, h, w))

    def forward_head(self, prefix: Tensor) -> Tensor:
        """timm's head on the final prefix tokens (LayerNorm is per token, so patches are not needed)."""
        return self._net.forward_head(self.norm(prefix))

    def train(self, mode: bool = True) -> TimmViT:
        super().train(mode)
        self._net.training = mode
        return self


def _check_supported(net: VisionTransformer, arch: str) -> None:
    if getattr(net, "global_pool", "token") != "token":
        raise ValueError(f"{arch}: global_pool={net.global_pool!r}; token dropping needs class-token pooling")
    if not all(type(b) is Block for b in net.blocks):
        kinds = sorted({type(b).__name__ for b in net.blocks})
        raise ValueError(f"{arch}: blocks of type {kinds} are not supported; need timm's standard Block")
    if any(getattr(b.attn, "gate", None) is not None for b in net.blocks):
        raise ValueError(f"{arch}: gated attention is not supported on packed tokens")
    if getattr(net, "attn_pool", None) is not None:
        raise ValueError(f"{arch}: attention-pool heads are not supported")


#: What ``PolicyModel`` and the FLOP counter wrap: ``embed``, ``blocks``, ``forward_head`` (see the two classes above).
Backbone = TimeSformer | TimmViT

#: A backbone block: timm's standard ``Block`` (``TimmViT`` checks it, JointST builds it) or a ``DividedBlock``.
BackboneBlock = Block | DividedBlock


def backbone_blocks(blocks: nn.Module) -> Sequence[BackboneBlock]:
    """A backbone's ``blocks`` (or a slice of them) typed as what they hold (``nn.ModuleList`` yields ``nn.Module``)."""
    return cast(Sequence[BackboneBlock], blocks)


# ----------------------------------------------------------------------------- the one dense forward


@dataclass
class DenseTrace:
    """Output of ``dense_forward``: logits, per-block attention ``(B, heads, L, L)``, token layout.

    Attributes:
        logits: ``(B, num_classes)``.
        attentions: per block ``(B, H, L, L)`` probabilities (``probs=True``), else empty.
        grid: ``(T, h, w)`` patch grid.
        num_prefix: class/distillation tokens before the patches.
        patch_tokens: ``(B, N, C)`` final patch tokens after the backbone's final norm.
    """

    logits: Tensor
    attentions: list[Tensor] = field(default_factory=list)
    grid: tuple[int, int, int] = (1, 1, 1)
    num_prefix: int = 1
    patch_tokens: Tensor | None = None


def dense_forward(backbone: Backbone, x: Tensor, probs: bool = False, keep_grad: bool = False) -> DenseTrace:
    """Every token through every block of ``backbone`` (no stochastic depth), the one dense forward.

    Args:
        backbone: ``TimeSformer`` or ``TimmViT`` (``model.backbone`` of a wrapped model).
        x: the backbone's input.
        probs: record each block's attention probabilities (timm blocks only).
        keep_grad: retain the gradients of the attention maps (``attn.grad`` after ``backward``).
    """
    emb = backbone.embed(x)
    tokens = torch.cat([emb.prefix, emb.patches], dim=1)
    trace = DenseTrace(logits=x.new_empty(0), grid=emb.grid, num_prefix=emb.prefix.shape[1])
    for block in backbone.blocks:
        if hasattr(block, "temporal_attn"):  # divided space-time: the block's own (packed) forward
            if probs:
                raise ValueError("divided space-time blocks have no single (L, L) attention map")
            tokens = block(tokens, emb.grid)
            continue
        tokens, p = block_forward(cast(Block, block), tokens, probs=probs, drop_path=False)
        if p is not None and keep_grad and p.requires_grad:
            p.retain_grad()
        if p is not None:
            trace.attentions.append(p)
    trace.logits = backbone.forward_head(tokens[:, :trace.num_prefix])
    trace.patch_tokens = backbone.norm(tokens[:, trace.num_prefix:])
    return trace
