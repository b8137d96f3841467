"""Formula-driven supervised pre-training images in the spirit of FractalDB.

Kataoka et al., "Pre-training without Natural Images" (ACCV 2020): every class
is one random iterated function system (IFS) of 2-4 affine maps
``x' = a x + b y + e, y' = c x + d y + f`` with parameters drawn from
U[-1, 1]; the chaos game samples its attractor, choosing map ``i`` with
probability proportional to ``|det A_i|``; systems whose attractor fills too
little (or too much) of its bounding box are rejected (the filling-rate
filter). Instances of a class perturb one parameter of one map by a factor
U[0.8, 1.2] (the paper's "weight" augmentation) and are then drawn with a random
colour, scale, placement and horizontal flip over a plain or low-contrast
background.

Everything is vectorised over a batch of systems: all instances of a class
iterate the chaos game together, each as :data:`CHAINS` parallel chains.

Public API: :func:`sample_ifs`, :func:`map_probabilities`, :func:`check_systems`,
:func:`perturb_system`, :func:`perturbed_instances`, :func:`chaos_game`, :func:`normalise_points`,
:func:`occupancy`, :func:`filling_rate`, :class:`Placement`,
:func:`sample_placement`, :func:`random_colors`, :func:`random_backgrounds`,
:func:`render`, :func:`render_class`, :func:`class_rng`,
:func:`generate_formula_dataset`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from iared_video.synthetic.parallel import run_jobs

__all__ = [
    "GENERATOR_NAME", "GENERATOR_VERSION", "sample_ifs", "map_probabilities", "check_systems",
    "perturb_system", "perturbed_instances", "chaos_game", "normalise_points", "occupancy", "filling_rate", "Placement",
    "sample_placement", "random_colors", "random_backgrounds", "render", "render_class", "class_rng",
    "default_num_points", "generate_formula_dataset",
]

GENERATOR_NAME = "iared_video.synthetic.formula"
GENERATOR_VERSION = "1.0.0"

PARAM_RANGE = (-1.0, 1.0)  # FractalDB draws every affine parameter from U[-1, 1]
FILL_GRID = 32  # filling rate: occupied share of a FILL_GRID x FILL_GRID grid over the bounding box
FILL_RANGE = (0.2, 0.95)  # keep systems whose filling rate lies in [lo, hi]
CHECK_POINTS = 8192  # chaos-game points used by the filter (8 per grid cell)
CONVERGENCE_TOL = 1e-3  # coupled chains must meet to this fraction of the attractor's extent
MAX_ABS = 1e6  # points beyond this are "huge": the system diverges
MIN_DET = 1e-6  # a system whose maps all have |det| below this is degenerate
CANDIDATES = 16  # systems checked per batch while sampling a class
BURN_IN = 64  # chaos-game steps dropped before recording
CHAINS = 64  # parallel chaos-game chains per system
PERTURB_RANGE = (0.8, 1.2)  # instance "weight" augmentation factor
PERTURB_TRIES = 8  # re-draws of a perturbation that breaks the system
SCALE_RANGE = (0.5, 0.95)  # attractor side as a fraction of the image side
MIN_ALPHA = 0.4  # opacity of a pixel hit once; the densest pixel is opaque
BG_GRADIENT = 0.1  # peak-to-peak brightness change of a low-contrast background
SYSTEM_STREAM, INSTANCE_STREAM = 0, 1
SPLITS = ("train", "val")


# --------------------------------------------------------------------------
# Iterated function systems
# --------------------------------------------------------------------------


def map_probabilities(system: np.ndarray) -> np.ndarray:
    """Selection probability of each map, proportional to ``|det A_i| = |a d - b c|``.

    Args:
        system: (M, 6) maps ``(a, b, c, d, e, f)``.

    Returns:
        (M,) probabilities (uniform when every determinant is zero).
    """
    det = np.abs(system[:, 0] * system[:, 3] - system[:, 1] * system[:, 2])
    total = det.sum()
    return det / total if total > 0 else np.full(len(system), 1.0 / len(system))


def _pad_systems(systems: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stacks systems of different map counts into (6, B * M) coefficients and (B, M) CDFs.

    Coefficient-major and flat so that one ``np.take`` gathers every chain's map.
    Padded maps get probability zero, so the inverse-CDF draw never picks them.
    """
    max_maps = max(len(s) for s in systems)
    params = np.zeros((6, len(systems), max_maps))
    probs = np.zeros((len(systems), max_maps))
    for i, system in enumerate(systems):
        system = np.asarray(system, dtype=np.float64)
        params[:, i, :len(system)] = system.T
        probs[i, :len(system)] = map_probabilities(system)
    cdf = np.cumsum(probs, axis=1)
    return params.reshape(6, -1), cdf / cdf[:, -1:]


def _step(params: np.ndarray, cdf: np.ndarray, x: np.ndarray, y: np.ndarray,
          u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One chaos-game step of every chain of every system.

    Args:
        params: (6, B * M) map coefficients from :func:`_pad_systems`.
        cdf: (B, M) cumulative map probabilities (last entry exactly 1).
        x: (B, C) current x of each chain.
        y: (B, C) current y.
        u: (B, C) uniforms in [0, 1); map ``i`` is chosen where ``cdf[i-1] <= u < cdf[i]``.

    Returns:
        The next ``(x, y)``.
    """
    batch, num_maps = cdf.shape
    choice = np.arange(0, batch * num_maps, num_maps)[:, None] + (u >= cdf[:, :1])
    for i in range(1, num_maps - 1):  # inverse CDF: count the CDF entries <= u
        choice += u >= cdf[:, i:i + 1]
    a, b, c, d, e, f = np.take(params, choice, axis=1)
    return a * x + b * y + e, c * x + d * y + f


def chaos_game(systems: Sequence[np.ndarray], num_points: int, rng: np.random.Generator, *,
               burn_in: int = BURN_IN, chains: int = CHAINS) -> np.ndarray:
    """Samples the attractors of a batch of IFSs with the chaos game.

    Each system runs ``chains`` independent chains from the origin; all chains of
    all systems step together, so the only Python loop is over steps. The first
    ``burn_in`` steps of every chain are dropped.

    Args:
        systems: B arrays of shape (M_i, 6); M_i may differ.
        num_points: Points kept per system (P).
        rng: Source of the map choices.
        burn_in: Steps dropped before recording.
        chains: Parallel chains per system.

    Returns:
        (B, P, 2) float64 points (a view of a (B, 2, P) array, so reductions over P are fast).
    """
    params, cdf = _pad_systems(systems)
    batch, chains = len(systems), max(1, min(chains, num_points))
    steps = -(-num_points // chains)
    x, y = np.zeros((batch, chains)), np.zeros((batch, chains))
    out = np.empty((batch, 2, steps, chains))
    with np.errstate(over="ignore", invalid="ignore"):  # divergent systems are filtered by the caller
        for _ in range(burn_in):
            x, y = _step(params, cdf, x, y, rng.random((batch, chains)))
        for t in range(steps):
            x, y = out[:, 0, t], out[:, 1, t] = _step(params, cdf, x, y, rng.random((batch, chains)))
    return out.reshape(batch, 2, steps * chains)[:, :, :num_points].transpose(0, 2, 1)


def _coupling_gap(systems: Sequence[np.ndarray], rng: np.random.Generator, steps: int,
                  chains: int = CHAINS) -> np.ndarray:
    """Largest distance between chain pairs that start apart but share every map choice.

    For affine maps the gap evolves as ``delta' = A_i delta``, so it measures how far
    ``steps`` random maps contract: a system whose gap does not vanish within the
    burn-in is non-contractive (or too slow for the burn-in to reach the attractor).

    Returns:
        (B,) largest final gap over the chains, from unit-scale random starts.
    """
    params, cdf = _pad_systems(systems)
    batch = len(systems)
    start = rng.standard_normal((2, batch, chains))
    x = np.concatenate([np.zeros((batch, chains)), start[0]], axis=1)
    y = np.concatenate([np.zeros((batch, chains)), start[1]], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            u = rng.random((batch, chains))
            x, y = _step(params, cdf, x, y, np.concatenate([u, u], axis=1))
        gap = np.maximum(np.abs(x[:, :chains] - x[:, chains:]), np.abs(y[:, :chains] - y[:, chains:])).max(axis=1)
    return np.where(np.isfinite(gap), gap, np.inf)


def check_systems(systems: Sequence[np.ndarray], rng: np.random.Generator,
                  fill_range: tuple[float, float] = FILL_RANGE,
                  points: np.ndarray | None = None) -> np.ndarray:
    """FractalDB's filter, batched: which systems converge and fill their box well.

    A system is kept when some map has ``|det| >= MIN_DET``, coupled chains meet
    within :data:`BURN_IN` steps, its points are finite and below :data:`MAX_ABS`,
    and its filling rate lies in ``fill_range``.

    Args:
        systems: B arrays of shape (M_i, 6).
        rng: Random source of the chaos games.
        fill_range: Accepted filling rates; ``(0, 1)`` checks convergence only.
        points: (B, P, 2) chaos-game points of ``systems`` to reuse (default:
            :data:`CHECK_POINTS` fresh ones).

    Returns:
        (B,) bool.
    """
    dets = np.array([np.abs(s[:, 0] * s[:, 3] - s[:, 1] * s[:, 2]).max() for s in systems])
    points = chaos_game(systems, CHECK_POINTS, rng) if points is None else points
    finite = np.isfinite(points).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], points, 0.0)
    lo, hi = safe.min(axis=1), safe.max(axis=1)
    bounded = finite & (np.maximum(-lo, hi).max(axis=1) < MAX_ABS)
    converged = _coupling_gap(systems, rng, BURN_IN) < CONVERGENCE_TOL * (hi - lo).max(axis=1)
    keep = (dets >= MIN_DET) & bounded & converged
    if fill_range[0] > 0 or fill_range[1] < 1:
        fill = filling_rate(safe)
        keep &= (fill >= fill_range[0]) & (fill <= fill_range[1])
    return keep


def sample_ifs(rng: np.random.Generator, min_maps: int = 2, max_maps: int = 4, *,
               fill_range: tuple[float, float] = FILL_RANGE, max_tries: int = 1000) -> np.ndarray:
    """Draws one random IFS that passes :func:`check_systems`.

    Candidates (map count uniform in ``[min_maps, max_maps]``, parameters U[-1, 1])
    are checked :data:`CANDIDATES` at a time; the first valid one is returned.

    Args:
        rng: Random source (the result is a function of its state).
        min_maps: Fewest affine maps.
        max_maps: Most affine maps.
        fill_range: Accepted filling rates.
        max_tries: Candidates drawn before giving up.

    Returns:
        (M, 6) maps ``(a, b, c, d, e, f)``.

    Raises:
        RuntimeError: If no candidate passes within ``max_tries``.
    """
    for _ in range(-(-max_tries // CANDIDATES)):
        counts = rng.integers(min_maps, max_maps + 1, size=CANDIDATES)
        candidates = [rng.uniform(*PARAM_RANGE, size=(int(m), 6)) for m in counts]
        ok = np.flatnonzero(check_systems(candidates, rng, fill_range))
        if len(ok):
            return candidates[ok[0]]
    raise RuntimeError(f"no IFS passed the filter in {max_tries} tries (fill_range={fill_range})")


def perturb_system(system: np.ndarray, rng: np.random.Generator,
                   factor_range: tuple[float, float] = PERTURB_RANGE) -> np.ndarray:
    """One instance of a class: one random parameter of one map times U[lo, hi].

    Returns:
        A perturbed copy of ``system``.
    """
    out = np.array(system, dtype=np.float64, copy=True)
    row, col = rng.integers(len(out)), rng.integers(6)
    out[row, col] *= rng.uniform(*factor_range)
    return out


def perturbed_instances(system: np.ndarray, count: int, num_points: int,
                        rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` perturbations of ``system`` that still converge, and their points.

    Perturbations whose chaos game does not converge (or diverges) are re-drawn,
    batched, up to :data:`PERTURB_TRIES` times; any still broken fall back to the
    class system. The filling rate is not re-filtered: the class system passed
    it, and one parameter changed by at most 20% keeps the shape.

    Returns:
        The instance systems and their (count, num_points, 2) points.
    """
    instances = [perturb_system(system, rng) for _ in range(count)]
    points = chaos_game(instances, num_points, rng)
    bad = np.flatnonzero(~check_systems(instances, rng, (0.0, 1.0), points))
    for attempt in range(PERTURB_TRIES + 1):
        if not len(bad):
            break
        for i in bad:
            instances[i] = perturb_system(system, rng) if attempt < PERTURB_TRIES else np.array(system, dtype=float)
        points[bad] = chaos_game([instances[i] for i in bad], num_points, rng)
        bad = bad[~check_systems([instances[i] for i in bad], rng, (0.0, 1.0), points[bad])]
    return instances, points


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def normalise_points(points: np.ndarray) -> np.ndarray:
    """Maps each instance's points onto [0, 1]^2 by its own bounding box (per axis).

    Args:
        points: (B, P, 2).

    Returns:
        (B, P, 2) in [0, 1]; a flat axis maps to 0.
    """
    lo = points.min(axis=1, keepdims=True)
    span = points.max(axis=1, keepdims=True) - lo
    return (points - lo) / np.where(span > 0, span, 1.0)


def occupancy(points: np.ndarray, grid: int = FILL_GRID) -> np.ndarray:
    """Which cells of a ``grid`` x ``grid`` raster over each bounding box hold a point.

    Returns:
        (B, grid, grid) bool, indexed ``[row = y, col = x]``.
    """
    cell = np.minimum((normalise_points(points) * grid).astype(np.int64), grid - 1)
    flat = (np.arange(len(points))[:, None] * grid + cell[..., 1]) * grid + cell[..., 0]
    counts = np.bincount(flat.ravel(), minlength=len(points) * grid * grid)
    return counts.reshape(len(points), grid, grid) > 0


def filling_rate(points: np.ndarray, grid: int = FILL_GRID) -> np.ndarray:
    """FractalDB's filling rate: occupied share of the bounding-box grid, (B,)."""
    return occupancy(points, grid).mean(axis=(1, 2))


@dataclass
class Placement:
    """Where each attractor lands: ``scale`` (B,) of the image side, top-left
    ``offset`` (B, 2) in pixels as (col, row), horizontal ``flip`` (B,) bool."""

    scale: np.ndarray
    offset: np.ndarray
    flip: np.ndarray


def _extent_px(scale: np.ndarray, size: int) -> np.ndarray:
    """Attractor side in pixels, (B,) int in [1, size]."""
    return np.clip(np.round(np.asarray(scale) * size), 1, size).astype(np.int64)


def sample_placement(rng: np.random.Generator, batch: int, size: int,
                     scale_range: tuple[float, float] = SCALE_RANGE) -> Placement:
    """Random scale, an offset that keeps the attractor fully inside, and a coin-flip mirror."""
    scale = rng.uniform(*scale_range, size=batch)
    room = size - _extent_px(scale, size) + 1
    offset = (rng.random((batch, 2)) * room[:, None]).astype(np.int64)
    return Placement(scale=scale, offset=offset, flip=rng.random(batch) < 0.5)


def random_colors(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Random foreground colours, (B, 3) in [0, 1]: half in the bright half of RGB, half in the dark."""
    bright = rng.random(batch) < 0.5
    return 0.5 * rng.random((batch, 3)) + 0.5 * bright[:, None]


def random_backgrounds(rng: np.random.Generator, colors: np.ndarray, size: int) -> np.ndarray:
    """Plain or low-contrast gradient backgrounds that contrast with ``colors``.

    A bright foreground gets a dark background and vice versa; half the
    backgrounds carry a linear gradient of :data:`BG_GRADIENT` peak to peak.

    Returns:
        (B, size, size, 3) float in [0, 1].
    """
    batch = len(colors)
    dark = colors.mean(axis=1) >= 0.5
    level = np.where(dark, 0.0, 0.6) + 0.4 * rng.random(batch)
    base = np.clip(level[:, None] + 0.1 * (rng.random((batch, 3)) - 0.5), 0.0, 1.0)
    theta = rng.uniform(0.0, 2 * np.pi, size=batch)
    amp = BG_GRADIENT * (rng.random(batch) < 0.5)
    ramp = np.linspace(-0.5, 0.5, size)
    field = np.cos(theta)[:, None, None] * ramp[None, None, :] + np.sin(theta)[:, None, None] * ramp[None, :, None]
    return np.clip(base[:, None, None, :] + (amp[:, None, None] * field / np.sqrt(2))[..., None], 0.0, 1.0)


def _density(unit: np.ndarray, size: int, placement: Placement) -> np.ndarray:
    """Splats normalised points into per-image hit counts, (B, size, size).

    Unit coordinate ``u`` lands on pixel ``round(u * (extent - 1)) + offset``;
    rows grow with ``y`` (image row 0 holds the attractor's lowest ``y``).
    """
    extent = _extent_px(placement.scale, size)[:, None]
    x = np.where(placement.flip[:, None], 1.0 - unit[..., 0], unit[..., 0])
    col = np.floor(x * (extent - 1) + 0.5).astype(np.int64) + placement.offset[:, :1]
    row = np.floor(unit[..., 1] * (extent - 1) + 0.5).astype(np.int64) + placement.offset[:, 1:]
    flat = (np.arange(len(unit))[:, None] * size + row) * size + col
    return np.bincount(flat.ravel(), minlength=len(unit) * size * size).reshape(len(unit), size, size)


def render(points: np.ndarray, size: int, colors: np.ndarray, backgrounds: np.ndarray,
           rng: np.random.Generator | None = None, placement: Placement | None = None) -> np.ndarray:
    """Draws a batch of attractors as colour densities over their backgrounds.

    Points are normalised to their bounding box, placed (random ``placement``
    from ``rng`` unless given) and counted per pixel; a pixel hit ``n`` times gets
    opacity ``MIN_ALPHA + (1 - MIN_ALPHA) log(1 + n) / log(1 + n_max)``, a pixel
    never hit keeps the background exactly.

    Args:
        points: (B, P, 2) chaos-game points.
        size: Output side in pixels.
        colors: (B, 3) foreground colours in [0, 1].
        backgrounds: (B, 3) plain colours or (B, size, size, 3) images in [0, 1].
        rng: Source of the placement (needed when ``placement`` is None).
        placement: Fixed placement, e.g. scale 1, offset 0, no flip.

    Returns:
        (B, size, size, 3) uint8.
    """
    if placement is None:
        if rng is None:
            raise ValueError("render needs rng or placement")
        placement = sample_placement(rng, len(points), size)
    counts = _density(normalise_points(points), size, placement)
    peak = np.log1p(counts.max(axis=(1, 2), keepdims=True))
    alpha = np.where(counts > 0, MIN_ALPHA + (1 - MIN_ALPHA) * np.log1p(counts) / np.maximum(peak, 1e-12), 0.0)
    bg = np.asarray(backgrounds, dtype=np.float64)
    bg = np.broadcast_to(bg[:, None, None, :] if bg.ndim == 2 else bg, (len(points), size, size, 3))
    image = bg + alpha[..., None] * (np.asarray(colors, dtype=np.float64)[:, None, None, :] - bg)
    return np.round(image * 255).astype(np.uint8)


def default_num_points(size: int) -> int:
    """Chaos-game points per image: four per pixel of the image."""
    return 4 * size * size


def render_class(system: np.ndarray, count: int, size: int, rng: np.random.Generator,
                 num_points: int | None = None) -> np.ndarray:
    """``count`` instances of one class: perturbed systems, random colour and placement.

    Returns:
        (count, size, size, 3) uint8.
    """
    num_points = default_num_points(size) if num_points is None else num_points
    _, points = perturbed_instances(system, count, num_points, rng)
    colors = random_colors(rng, count)
    return render(points, size, colors, random_backgrounds(rng, colors, size), rng)


# --------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------


def class_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent per-class stream (``SYSTEM_STREAM`` or ``INSTANCE_STREAM``)."""
    return np.random.default_rng([seed, stream, index])


def _class_name(index: int, num_classes: int) -> str:
    """``ifs_0007``-style folder name; zero padding keeps sorted order = class index."""
    return f"ifs_{index:0{max(4, len(str(num_classes - 1)))}d}"


def _make_class(job: tuple[str, int, int, int, int, int, int, int | None]) -> dict:
    """Samples one class system, renders its train and val images, writes the PNGs."""
    out_dir, seed, index, num_classes, per_class, val_per_class, size, num_points = job
    system = sample_ifs(class_rng(seed, index, SYSTEM_STREAM))
    images = render_class(system, per_class + val_per_class, size, class_rng(seed, index, INSTANCE_STREAM),
                          num_points)
    name = _class_name(index, num_classes)
    for split, chunk in zip(SPLITS, (images[:per_class], images[per_class:])):
        folder = os.path.join(out_dir, split, name)
        os.makedirs(folder, exist_ok=True)
        for i, image in enumerate(chunk):
            Image.fromarray(image).save(os.path.join(folder, f"{i:05d}.png"), format="PNG")
    return {"index": index, "name": name, "system": system.tolist(),
            "probabilities": map_probabilities(system).tolist()}


def generate_formula_dataset(out_dir: str, num_classes: int = 100, per_class: int = 100, size: int = 64,
                             val_per_class: int = 10, seed: int = 0, num_points: int | None = None,
                             num_workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Writes a FractalDB-style set in the ImageNet folder layout.

    Layout: ``train/ifs_NNNN/NNNNN.png``, ``val/ifs_NNNN/NNNNN.png`` and
    ``meta.json`` (generator, version, every argument, filter constants and
    each class's system). Class ``k`` draws from ``class_rng(seed, k, .)`` only,
    so the images do not depend on ``num_workers``.

    Args:
        out_dir: Output directory (created if needed).
        num_classes: Number of IFS classes.
        per_class: Train images per class.
        size: Image side in pixels.
        val_per_class: Val images per class.
        seed: Non-negative seed; the same seed gives the same PNG bytes.
        num_points: Chaos-game points per image (default :func:`default_num_points`).
        num_workers: Worker processes (<= 1: in-process).
        progress: Show a tqdm progress bar.

    Returns:
        The meta dict that is also written to ``meta.json``.
    """
    if num_classes < 1 or per_class < 1 or val_per_class < 0 or size < 2 or seed < 0:
        raise ValueError(f"bad sizes: num_classes={num_classes} per_class={per_class} "
                         f"val_per_class={val_per_class} size={size} seed={seed}")
    arguments = dict(num_classes=num_classes, per_class=per_class, size=size, val_per_class=val_per_class,
                     seed=seed, num_points=num_points, num_workers=num_workers, progress=progress)
    for split in SPLITS:
        for index in range(num_classes):
            os.makedirs(os.path.join(out_dir, split, _class_name(index, num_classes)), exist_ok=True)
    jobs = [(out_dir, seed, k, num_classes, per_class, val_per_class, size, num_points) for k in range(num_classes)]
    classes = list(run_jobs(_make_class, jobs, num_workers, progress, "formula classes", unit="class"))
    meta = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": seed, "arguments": arguments,
            "num_points": default_num_points(size) if num_points is None else num_points,
            "num_classes": num_classes, "filter": {"fill_grid": FILL_GRID, "fill_range": list(FILL_RANGE),
                                                  "param_range": list(PARAM_RANGE), "burn_in": BURN_IN,
                                                  "convergence_tol": CONVERGENCE_TOL},
            "perturb_range": list(PERTURB_RANGE), "scale_range": list(SCALE_RANGE), "classes": classes}
    text = json.dumps(meta, indent=2) + "\n"
    with open(os.path.join(out_dir, "meta.json"), "w", encoding="utf-8") as f:
        f.write(text)
    return json.loads(text)
