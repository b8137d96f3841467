"""Ordered map over generator jobs, in-process or in a process pool, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["run_jobs"]


def run_jobs(fn: Callable[[Any], dict], jobs: list, num_workers: int, progress: bool, desc: str,
             unit: str = "item", chunksize: int = 1) -> Iterator[dict]:
    """Yield ``fn(job)`` for each job in order; ``num_workers > 1`` spreads them over processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress)
    pool = ProcessPoolExecutor(max_workers=num_workers) if num_workers > 1 else None
    results: Iterable[dict] = pool.map(fn, jobs, chunksize=chunksize) if pool is not None else map(fn, jobs)
    try:
        for res in results:
            bar.update(1)
            yield res
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
