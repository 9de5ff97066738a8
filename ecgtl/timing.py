"""Where a run's time goes: phases timed process-wide (generation, prepare, pretrain, finetune, scratch,
evaluation, logging), printed as a table at the end of a top-level `finetune`/`main` run and logged with it.
Nested stages add to the same totals, so a fine-tune that pretrains first shows both."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PHASES = ("generation", "prepare", "pretrain", "finetune", "scratch", "evaluation", "logging")
_totals: dict[str, float] = {}
_started = [time.perf_counter()]
_open: list[list[float]] = []  # per open phase: [time spent in phases nested inside it]


def reset() -> None:
    _totals.clear()
    _started[0] = time.perf_counter()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a phase; a phase nested in another (generation inside prepare) counts for itself only."""
    started = time.perf_counter()
    _open.append([0.0])
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        nested = _open.pop()[0]
        _totals[name] = _totals.get(name, 0.0) + elapsed - nested
        if _open:
            _open[-1][0] += elapsed


def totals() -> dict[str, float]:
    """Seconds per phase so far (each phase's own time, nested phases excluded)."""
    return dict(_totals)


def table() -> str:
    """Seconds per phase, the rest ("other": imports, setup, MLflow runs), and the total since `reset`."""
    total = time.perf_counter() - _started[0]
    rows = [(name, _totals[name]) for name in (*PHASES, *sorted(set(_totals) - set(PHASES))) if name in _totals]
    rows.append(("other", max(total - sum(seconds for _, seconds in rows), 0.0)))
    lines = [f"{'phase':<12} {'seconds':>8} {'share':>6}"]
    lines += [f"{name:<12} {seconds:8.1f} {seconds / max(total, 1e-9):6.0%}" for name, seconds in rows]
    lines.append(f"{'total':<12} {total:8.1f}")
    return "\n".join(lines)
