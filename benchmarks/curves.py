"""Learning-curve tables recorded from the trainer's built-in tasks
(benchmarks/record_curves.py): the file format, loading, the lookup of the recorded
configuration nearest to a suggested one, and the test error a run would be deployed with.

One compressed ``.npz`` per task under benchmarks/data/curves/. Curves are float32 arrays
``[configuration, seed, epoch]`` named by the metric the trainer reports (``val_loss``,
``train_loss``, ``val_accuracy`` or ``val_rmse``) plus ``test_loss``, ``test_accuracy`` or
``test_rmse`` (the test split evaluated after every epoch) and ``epoch_seconds``. A run that
diverged is kept: its curves are NaN from the epoch it diverged at, and ``infeasible`` is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunewire.server.algorithms.encoding import encode_unit
from tunewire.server.domain.space import ParameterKind, Params, SearchSpace

FORMAT_VERSION = 1
CURVES_DIR = Path(__file__).resolve().parent / "data" / "curves"
# Per-epoch arrays besides the metrics the trainer reports.
TEST_METRICS = {True: ("test_loss", "test_accuracy"), False: ("test_loss", "test_rmse")}


def curve_file(task: str, directory: Path = CURVES_DIR) -> Path:
    return directory / f"{task}.npz"


@dataclass
class CurveTable:
    """Every recorded run of one task.

    Attributes:
        params: one configuration per row, inactive conditional parameters absent.
        design_index: each row's index in the recording's design (anchors, then Sobol
            points), so that a resumed or longer recording extends the same design.
        curves: metric name -> float32 ``[row, seed, epoch]``; NaN where a run diverged
            or was not recorded. ``epoch_seconds`` is among them: the seconds of training
            plus validation of each epoch (for a diverged run, up to the divergence).
        pretrain_seconds: ``[row, seed]``, autoencoder pretraining (0 when none ran).
        done: ``[row, seed]``, the run was recorded (to the end, or to its divergence).
        infeasible: ``[row, seed]``, the run diverged (the trainer raised TrialInfeasible).
        reasons: ``"row,seed"`` -> the trainer's message, for infeasible runs.
        meta: task, max_epochs, the search space, versions, device, the command, the
            recording's sessions and wall time.
    """

    task: str
    max_epochs: int
    classification: bool
    seeds: tuple[int, ...]
    parameters: list[dict[str, Any]]
    params: list[Params]
    design_index: np.ndarray
    curves: dict[str, np.ndarray]
    pretrain_seconds: np.ndarray
    done: np.ndarray
    infeasible: np.ndarray
    n_params: np.ndarray
    reasons: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- the file ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Writes the table atomically (a reader or a killed writer never sees half a file)."""
        meta = dict(
            self.meta,
            format=FORMAT_VERSION,
            task=self.task,
            max_epochs=self.max_epochs,
            classification=self.classification,
            seeds=list(self.seeds),
            parameters=self.parameters,
            reasons=self.reasons,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        arrays: dict[str, Any] = {
            "meta": np.array(json.dumps(meta)),
            "params": np.array(json.dumps(self.params)),
            "design_index": self.design_index.astype(np.int32),
            "pretrain_seconds": self.pretrain_seconds.astype(np.float32),
            "done": self.done,
            "infeasible": self.infeasible,
            "n_params": self.n_params.astype(np.int64),
        }
        arrays.update({f"curve_{k}": v.astype(np.float32) for k, v in self.curves.items()})
        with partial.open("wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> CurveTable:
        """Reads a table written by `save`.

        Raises:
            ValueError: a file of another format version.
        """
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: curve format {meta.get('format')}, this code reads {FORMAT_VERSION}"
                )
            curves = {k[len("curve_") :]: f[k] for k in f.files if k.startswith("curve_")}
            return cls(
                task=meta.pop("task"),
                max_epochs=int(meta.pop("max_epochs")),
                classification=bool(meta.pop("classification")),
                seeds=tuple(meta.pop("seeds")),
                parameters=meta.pop("parameters"),
                params=json.loads(str(f["params"])),
                design_index=f["design_index"],
                curves=curves,
                pretrain_seconds=f["pretrain_seconds"],
                done=f["done"],
                infeasible=f["infeasible"],
                n_params=f["n_params"],
                reasons=meta.pop("reasons", {}),
                meta={k: v for k, v in meta.items() if k != "format"},
            )

    def complete(self) -> CurveTable:
        """The rows recorded for every seed (a recording stopped by its deadline may hold
        rows with some seeds missing)."""
        keep = np.flatnonzero(self.done.all(axis=1))
        return self.rows(keep)

    def rows(self, keep: Sequence[int] | np.ndarray) -> CurveTable:
        keep = np.asarray(keep, dtype=int)
        kept = {str(int(i)): n for n, i in enumerate(keep)}
        reasons = {}
        for key, text in self.reasons.items():
            row, seed = key.split(",")
            if row in kept:
                reasons[f"{kept[row]},{seed}"] = text
        return CurveTable(
            task=self.task,
            max_epochs=self.max_epochs,
            classification=self.classification,
            seeds=self.seeds,
            parameters=self.parameters,
            params=[self.params[i] for i in keep],
            design_index=self.design_index[keep],
            curves={k: v[keep] for k, v in self.curves.items()},
            pretrain_seconds=self.pretrain_seconds[keep],
            done=self.done[keep],
            infeasible=self.infeasible[keep],
            n_params=self.n_params[keep],
            reasons=reasons,
            meta=self.meta,
        )

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.params)

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dicts(self.parameters)

    @property
    def score_name(self) -> str:
        """The per-epoch validation score the trainer reports beside the loss."""
        return "val_accuracy" if self.classification else "val_rmse"

    def reported_epochs(self, row: int, seed: int) -> int:
        """Epochs the trainer reported for this run (fewer than max_epochs if it diverged)."""
        return int(np.isfinite(self.curves["val_loss"][row, seed]).sum())

    def test_error(self, row: int, seed: int, epochs: int) -> float:
        """The test error the trainer returns for this run stopped after `epochs` epochs:
        it restores the weights of the best validation loss so far and tests them (1 -
        accuracy, or the test MSE of the standardised target for regression). NaN if the
        run diverged by then (the trainer returns no model) or reported no epoch."""
        diverged = self.infeasible[row, seed] and epochs > self.reported_epochs(row, seed)
        val = self.curves["val_loss"][row, seed, :epochs]
        if diverged or not np.isfinite(val).any():
            return float("nan")
        best = int(np.nanargmin(val))
        if self.classification:
            return 1.0 - float(self.curves["test_accuracy"][row, seed, best])
        return float(self.curves["test_loss"][row, seed, best])

    def expected_test_error(self, row: int, epochs: int) -> float:
        """A configuration's test error after `epochs` epochs, averaged over the recorded
        seeds that did not diverge: the regret of a choice scores the configuration, not
        the luck of one training run (as benchmarks/tabular.py scores table entries)."""
        errors = [self.test_error(row, s, epochs) for s in range(len(self.seeds))]
        finite = [e for e in errors if np.isfinite(e)]
        return float(np.mean(finite)) if finite else float("nan")

    @cached_property
    def best_test_error(self) -> float:
        """The smallest expected test error of a fully trained configuration: regret 0."""
        return float(
            np.nanmin([self.expected_test_error(i, self.max_epochs) for i in range(len(self))])
        )

    def final_metrics(self, row: int, seed: int, epochs: int) -> dict[str, float]:
        """The metrics the trainer completes a trial with after `epochs` epochs (as
        tunewire.trainer.tasks.training.train_network returns them)."""
        val = self.curves["val_loss"][row, seed, :epochs]
        best = int(np.nanargmin(val))
        out = {
            "val_loss": float(val[best]),
            "epochs_trained": float(epochs),
            "best_epoch": float(best + 1),
            "n_params": float(self.n_params[row]),
            "train_seconds": float(
                self.pretrain_seconds[row, seed]
                + np.nansum(self.curves["epoch_seconds"][row, seed, :epochs])
            ),
        }
        names = (
            ("val_accuracy", "test_loss", "test_accuracy")
            if self.classification
            else ("val_rmse", "test_loss", "test_rmse")
        )
        for name in names:
            out[name] = float(self.curves[name][row, seed, best])
        return out

    def epoch_report(self, row: int, seed: int, epoch: int) -> dict[str, float]:
        """What the trainer reports after `epoch` (1-based)."""
        names = ("val_loss", "train_loss", self.score_name)
        return {n: float(self.curves[n][row, seed, epoch - 1]) for n in names}

    # -- lookup -----------------------------------------------------------------------
    @cached_property
    def _lookup(self) -> _NearestConfiguration:
        return _NearestConfiguration(self.space, self.params)

    def nearest(self, params: Mapping[str, Any]) -> int:
        """The row of the recorded configuration nearest to `params` (see
        `_NearestConfiguration`)."""
        return self._lookup.nearest(params)


class _NearestConfiguration:
    """Nearest recorded configuration with the same active parameters (the same number of
    hidden layers, momentum only with SGD), by Euclidean distance in the unit-cube
    coordinates the optimiser itself uses (log scales in the log, integers by bins), a
    categorical mismatch counting as distance 1. A suggestion whose structure the table
    lacks falls back to every row, inactive parameters at the encoding's fixed value."""

    def __init__(self, space: SearchSpace, params: Sequence[Mapping[str, Any]]) -> None:
        self.space = space
        self.categorical = np.array(
            [p.kind is ParameterKind.CATEGORICAL for p in space.parameters], dtype=bool
        )
        self.units = np.array([encode_unit(space, p) for p in params]).reshape(len(params), -1)
        self.groups: dict[frozenset[str], np.ndarray] = {}
        keys = [frozenset(p) for p in params]
        for key in set(keys):
            self.groups[key] = np.array([i for i, k in enumerate(keys) if k == key])
        self.everything = np.arange(len(params))

    def nearest(self, params: Mapping[str, Any]) -> int:
        unit = encode_unit(self.space, params)
        rows = self.groups.get(frozenset(params), self.everything)
        diff = self.units[rows] - unit
        diff[:, self.categorical] = np.abs(diff[:, self.categorical]) > 1e-9
        return int(rows[int(np.argmin((diff**2).sum(axis=1)))])


def load_curves(task: str, directory: Path = CURVES_DIR, *, complete: bool = True) -> CurveTable:
    """The recorded table of `task` (only rows recorded for every seed, by default)."""
    table = CurveTable.load(curve_file(task, directory))
    return table.complete() if complete else table
