"""The packed fast path against an independent per-sample reference built from timm's own block forward."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from iared_video.methods import build_model, load_config
from iared_video.methods.iared import ControlledKeepPolicy
from iared_video.models import PolicyModel

TINY_TSF = ["MODEL.EMBED_DIM", "64", "MODEL.DEPTH", "4", "MODEL.NUM_HEADS", "4", "DATA.NUM_FRAMES", "4",
            "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64", "MODEL.NUM_CLASSES", "5",
            "IARED.NUM_GROUPS", "2"]
TINY_DEIT = ["MODEL.MODEL_NAME", "deit", "MODEL.ARCH", "deit_tiny_patch16_224", "MODEL.NUM_CLASSES", "7",
             "IARED.NUM_GROUPS", "3", "DATA.TRAIN_CROP_SIZE", "96", "DATA.TEST_CROP_SIZE", "96"]


def reference_logits(model: PolicyModel, x: Tensor, keep: list[Tensor]) -> Tensor:
    """Per sample: gather its kept tokens at every group and run the timm blocks' own ``forward`` (B=1)."""
    backbone, logits = model.backbone, []
    for i in range(x.shape[0]):
        emb = backbone.embed(x[i:i + 1])
        prefix, patches, num_prefix = emb.prefix, emb.patches.clone(), emb.prefix.shape[1]
        for group in range(model.num_groups):
            idx = keep[group][i].nonzero().flatten()
            seq = torch.cat([prefix, patches[:, idx]], dim=1)
            for block in model.group_blocks(group):
                seq = block(seq)  # timm Block.forward, dense attention on this sample's kept tokens
            prefix = seq[:, :num_prefix]
            patches[:, idx] = seq[:, num_prefix:]
        logits.append(backbone.forward_head(prefix))
    return torch.cat(logits)


def controlled(opts: list[str], ratios: list[float], schedule: str = "geometric") -> PolicyModel:
    torch.manual_seed(0)
    model = build_model(load_config(None, opts)).eval()
    policy = ControlledKeepPolicy(model.policy, schedule)
    policy.set_ratios(torch.tensor(ratios))
    return PolicyModel(model.backbone, policy, model.num_groups).eval()


@pytest.mark.parametrize("opts,shape", [(TINY_TSF, (4, 3, 4, 64, 64)), (TINY_DEIT, (4, 3, 96, 96))])
@pytest.mark.parametrize("schedule", ["geometric", "first"])
def test_fast_path_matches_per_sample_reference(opts: list[str], shape: tuple, schedule: str) -> None:
    ratios = [0.2, 0.55, 0.9, 1.0]
    model = controlled(opts, ratios, schedule)
    x = torch.randn(shape)
    with torch.no_grad():
        out = model(x, return_policy=True)
        expected = reference_logits(model, x, out.keep)
    counts = out.keep[-1].sum(1).tolist()
    assert len(set(counts)) == len(ratios), f"keep counts should differ per sample, got {counts}"
    num = out.keep[0].shape[1]
    assert counts == [max(1, round(r * num)) for r in ratios]
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=1e-4)


def test_threshold_interpreter_mixed_counts_match_reference() -> None:
    torch.manual_seed(3)
    model = build_model(load_config(None, TINY_TSF)).eval()
    x = torch.randn(3, 3, 4, 64, 64)
    with torch.no_grad():
        scores = model(x, return_policy=True).scores[0]
        model.policy.threshold = float(scores.median())  # splits the tokens unevenly across samples
        out = model(x, return_policy=True)
        expected = reference_logits(model, x, out.keep)
    assert len(set(out.keep[-1].sum(1).tolist())) > 1
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (varlen flash attention)")
def test_cuda_varlen_bf16_matches_fp32_reference() -> None:
    model = controlled(TINY_DEIT, [0.3, 0.6, 0.8, 1.0]).cuda()
    x = torch.randn(4, 3, 96, 96, device="cuda")
    with torch.no_grad():
        out = model(x, return_policy=True)
        expected = reference_logits(model, x, out.keep)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model(x)
    torch.testing.assert_close(fast.float(), expected, atol=5e-2, rtol=5e-2)


def test_controlled_keep_with_a_late_first_drop_group() -> None:
    """FIRST_DROP_GROUP 2 of 3: group 1 keeps everything, groups 2-3 reach r^(1/2) then r, logits as reference."""
    ratios = [0.25, 0.64, 1.0]
    model = controlled([*TINY_DEIT, "IARED.FIRST_DROP_GROUP", "2"], ratios)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        out = model(x, return_policy=True)
        expected = reference_logits(model, x, out.keep)
    num = out.keep[0].shape[1]
    assert out.keep[0].all()
    assert out.keep[1].sum(1).tolist() == [round(r ** 0.5 * num) for r in ratios]
    assert out.keep[2].sum(1).tolist() == [round(r * num) for r in ratios]
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lengths,groups", [([3, 7, 1, 5], 1), ([200, 20], 2), ([36] * 6 + [4] * 10 + [9, 11] * 4, 2)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_block_diagonal_sdpa_matches_per_sample_softmax(lengths: list[int], groups: int, with_bias: bool) -> None:
    """Every bucketing (one padded call, one call per sample, groups of similar length) equals
    softmax(q k^T * scale + key bias) v computed per sample."""
    from iared_video.models.packed import PackedSeqs, block_diagonal_sdpa

    torch.manual_seed(0)
    heads, dim = 3, 32  # the tiny models' heads: the cost model's groups at their pair cost
    q, k, v = (torch.randn(sum(lengths), heads, dim) for _ in range(3))
    bias = torch.randn(sum(lengths)) if with_bias else None
    seqs = PackedSeqs.from_lengths(lengths, torch.device("cpu"))
    assert len(seqs.buckets(pair_macs=2 * heads * dim)) == groups
    out = block_diagonal_sdpa(q, k, v, seqs, key_bias=bias)
    start = 0
    for n in lengths:
        qs, ks, vs = (t[start:start + n].transpose(0, 1) for t in (q, k, v))
        logits = qs @ ks.transpose(1, 2) * dim ** -0.5
        if bias is not None:
            logits = logits + bias[start:start + n]
        probs = torch.softmax(logits, dim=-1)
        torch.testing.assert_close(out[start:start + n], (probs @ vs).transpose(0, 1), atol=1e-5, rtol=1e-5)
        start += n


def test_length_buckets_are_the_cheapest_partition() -> None:
    """The dynamic programme's grouping costs what the best of every split of the sorted order costs
    (enumerated), and a group pads to its longest member; the cost model by hand."""
    import itertools
    import random

    from iared_video.models import packed

    call, gather = packed._SDPA_CALL_MACS, packed._GATHER_PAIRS
    assert packed.bucket_cost(1, 10, 2) == call + 2 * 100  # one sample: no padding, no gather
    assert packed.bucket_cost(3, 10, 2) == call + 2 * (3 * 100 + gather * 30)
    rng = random.Random(0)
    for _ in range(20):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 8))]
        pair = rng.choice([16, 192, 4096])
        ordered = sorted(lengths)

        def cost(groups: list[list[int]], pair: int = pair) -> float:
            return sum(packed.bucket_cost(len(g), max(g), pair) for g in groups)

        splits = []
        for cuts in itertools.product([False, True], repeat=len(ordered) - 1):
            groups, current = [], [ordered[0]]
            for n, cut in zip(ordered[1:], cuts):
                if cut:
                    groups.append(current)
                    current = []
                current.append(n)
            splits.append(cost([*groups, current]))
        seqs = packed.PackedSeqs.from_lengths(lengths, torch.device("cpu"))
        chosen = [[lengths[i] for i in group] for group in seqs.buckets(pair)]
        assert sorted(i for group in seqs.buckets(pair) for i in group) == list(range(len(lengths)))
        assert cost(chosen) == pytest.approx(min(splits))


def test_length_buckets_match_the_quadratic_programme_on_large_batches() -> None:
    """The convex-hull DP costs what the plain O(B^2) recurrence over every last group costs, on batches
    too large to enumerate (up to 300 samples, repeated lengths, the three pair costs)."""
    import random

    from iared_video.models import packed

    def quadratic_best(lengths: list[int], pair: int) -> int:
        ordered, best = sorted(lengths), [0]
        for j in range(1, len(ordered) + 1):
            best.append(min(best[i] + packed.bucket_cost(j - i, ordered[j - 1], pair) for i in range(j)))
        return best[-1]

    rng = random.Random(1)
    for _ in range(40):
        lengths = [rng.randint(1, rng.choice([5, 37, 300])) for _ in range(rng.randint(9, 300))]
        pair = rng.choice([16, 192, 4096])
        seqs = packed.PackedSeqs.from_lengths(lengths, torch.device("cpu"))
        groups = seqs.buckets(pair)
        assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
        chosen = sum(packed.bucket_cost(len(g), max(lengths[i] for i in g), pair) for g in groups)
        assert chosen == quadratic_best(lengths, pair)
