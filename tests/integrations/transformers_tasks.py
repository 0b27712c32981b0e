"""A tiny BERT classifier built from a config (nothing downloaded) on a synthetic token task,
trained with `transformers.Trainer`, as a user's own code would be."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

from tunewire.integrations.transformers import StepReporter, TransformersTrialCallback

VOCAB = 16
LENGTH = 8
MARKER = 3  # a sequence's label: whether this token occurs in it


def token_examples(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Random token sequences labelled by whether MARKER occurs: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (count, LENGTH), generator=generator)
    labels = (ids == MARKER).any(dim=1).long()
    mask = torch.ones(LENGTH, dtype=torch.long)
    return [
        {"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(count)
    ]


def tiny_bert(seed: int) -> BertForSequenceClassification:
    """A one-layer BERT of a few thousand parameters, from a config."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def fit(
    params: Mapping[str, Any],
    callback: TransformersTrialCallback,
    output_dir: Path,
    *,
    max_steps: int = 12,
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
    seed: int = 0,
) -> Trainer:
    """Trains the tiny BERT with the trial's `lr`, evaluating every 4 steps, on the CPU."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        eval_strategy="steps",
        eval_steps=4,
        max_steps=max_steps,
        learning_rate=float(params["lr"]),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=seed,
    )
    trainer = Trainer(
        model=tiny_bert(seed),
        args=args,
        train_dataset=token_examples(256, seed),
        eval_dataset=token_examples(64, seed + 1),
        compute_metrics=compute_metrics,
        callbacks=[callback],
    )
    trainer.train()
    return trainer


def train(params: Mapping[str, Any], reporter: StepReporter) -> dict[str, float]:
    """A `tunewire train --task` user task: the worker completes the trial with the best
    evaluation loss the callback saw."""
    callback = TransformersTrialCallback(reporter, monitor="eval_loss")
    with tempfile.TemporaryDirectory() as output_dir:
        fit(params, callback, Path(output_dir), seed=getattr(reporter, "seed", 0))
    return callback.final_metrics
