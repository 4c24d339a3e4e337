"""Hyperparameter sweeps: grid or random configs that tag their runs."""

from __future__ import annotations

import itertools
import random as _random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from . import errors

__all__ = ["sweep", "SweepConfig"]


class SweepConfig(dict):
    """One config of a sweep: a dict of values, with ``sweep_id`` and ``index``."""

    sweep_id: str
    index: int

    def __init__(self, values: Mapping[str, Any], sweep_id: str, index: int) -> None:
        super().__init__(values)
        self.sweep_id = sweep_id
        self.index = index

    @property
    def tags(self) -> dict[str, str]:
        """Key-value tags that mark a run as part of this sweep."""
        return {"sweep": self.sweep_id, "sweep_index": str(self.index)}


def sweep(grid: Mapping[str, Sequence[Any] | Any], method: str = "grid", n: int | None = None,
          *, seed: int | None = None, experiment: Any = None,
          sweep_id: str | None = None) -> Iterator[Any]:
    """Configs for a hyperparameter sweep.

    ``grid`` maps each name to its candidate values (a single value is held
    fixed).  ``method="grid"`` yields every combination (the first ``n`` if
    given); ``method="random"`` draws ``n`` of them without repeats (all,
    shuffled, if ``n`` is None or larger than the grid).

    With ``experiment=`` (an :class:`Experiment`), each step starts a run
    tagged with the sweep (label ``"sweep"``, tag values ``sweep`` and
    ``sweep_index``) with the config logged as params, and yields
    ``(run, config)``; end the run with ``with run:``::

        for run, cfg in synadb.sweep({"lr": [1e-3, 1e-2], "bs": [32, 64]},
                                     experiment=exp):
            with run:
                run.log_metric("accuracy", train(**cfg))
        best = exp.get_best_run("accuracy", minimize=False)
    """
    if not isinstance(grid, Mapping) or not grid:
        raise errors.InvalidArgument("a sweep needs a non-empty dict of name -> values")
    if method not in ("grid", "random"):
        raise errors.InvalidArgument(f"unknown sweep method {method!r}; use 'grid' or 'random'")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise errors.InvalidArgument(f"n must be a positive int, got {n!r}")
    names = list(grid)
    choices = []
    for name in names:
        vals = grid[name]
        if hasattr(vals, "ndim") and hasattr(vals, "tolist"):  # numpy array (np.logspace)
            vals = vals.tolist() if vals.ndim else [vals.tolist()]
        elif isinstance(vals, (str, bytes, Mapping)) or not isinstance(vals, Iterable):
            vals = [vals]  # a single value is held fixed
        else:  # list, tuple, range, set, generator
            vals = list(vals)
        if not vals:
            raise errors.InvalidArgument(f"sweep value list of {name!r} is empty")
        choices.append(list(vals))
    combos: Any = itertools.product(*choices)
    if method == "random":
        total = 1
        for vals in choices:
            total *= len(vals)
        if n is not None and n < total and total > 100_000:
            # Draw n indices instead of listing every combination (a
            # 10-parameter grid has billions); decode each one digit by digit.
            combos = [_nth(choices, i) for i in _random.Random(seed).sample(range(total), n)]
        else:
            combos = list(combos)
            _random.Random(seed).shuffle(combos)
    sid = sweep_id or uuid.uuid4().hex[:12]
    for i, combo in enumerate(itertools.islice(combos, n)):
        config = SweepConfig(dict(zip(names, combo)), sid, i)
        if experiment is None:
            yield config
        else:
            run = experiment.start_run(tags=["sweep"], params=dict(config), name=f"sweep-{i}",
                                       tag_values=config.tags)
            yield run, config


def _nth(choices: list[list[Any]], index: int) -> tuple[Any, ...]:
    """The ``index``-th combination of ``itertools.product(*choices)``."""
    out = []
    for vals in reversed(choices):
        index, digit = divmod(index, len(vals))
        out.append(vals[digit])
    return tuple(reversed(out))
