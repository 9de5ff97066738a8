"""Progress of long work on stderr, and the fan-out of record chunks over forked worker processes that reports it.

The one place outside the CLI that draws a progress bar (click's), so that library modules carry no UI code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TypeVar

import click

Task = TypeVar("Task")
Result = TypeVar("Result")


def progress_bar(label: str, *, length: int | None = None, items: Iterable | None = None, show: bool = True,
                 item_name: Callable | None = None):
    """A context manager yielding a bar (`bar.update(n)`, or iterate it when `items` is given) on stderr;
    hidden when `show` is false."""
    return click.progressbar(items, length=length, label=label, file=sys.stderr, hidden=not show,
                             item_show_func=item_name)


def map_chunks(function: Callable[[Task], Result], tasks: Sequence[Task], sizes: Sequence[int], *, workers: int,
               label: str, show: bool = True) -> list[Result]:
    """`function(task)` for every task, results in task order: in this process when `workers <= 1` or there is
    one task, else on `workers` forked processes. The bar advances by `sizes[i]` (records) per finished task."""
    results: list[Result] = []
    with progress_bar(label, length=sum(sizes), show=show) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task, size in zip(tasks, sizes, strict=True):
                results.append(function(task))
                bar.update(size)
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                for result, size in zip(pool.map(function, tasks), sizes, strict=True):
                    results.append(result)
                    bar.update(size)
    return results
