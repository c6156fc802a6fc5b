"""Scoring any predictor with a task's metrics: the one loop behind eval, train, QAT, report and mixed precision.

A predictor is a function from a float32 network input batch to the raw outputs (a torch model, an ONNX Runtime
session, an engine's runner).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]


def score(task, predict: PredictFn, data, batch_size: int = 64, progress: bool = False) -> dict:
    """The task's metrics of ``predict`` on an EvalSet (see ``edgeres.tasks.base.EvalSet``)."""
    from edgeres.progress import progress_bar

    scorer = task.scorer(data)
    with progress_bar(enabled=progress) as bar:
        bar_task = bar.add_task("evaluating", total=len(data))
        for x, hws in data.eval_batches(batch_size):
            scorer.add(np.asarray(predict(x), dtype=np.float32), hws)
            bar.advance(bar_task, len(hws))
    metrics = scorer.result()
    metrics["schema"] = task.json_schema
    return metrics


def predict_outputs(predict: PredictFn, data, batch_size: int = 64) -> np.ndarray:
    """``predict``'s raw outputs over an EvalSet, in order, as one array."""
    out = [np.asarray(predict(x), dtype=np.float32) for x, _ in data.eval_batches(batch_size)]
    return np.concatenate(out)


def torch_predict_fn(model, device: str = "cpu") -> PredictFn:
    """Wrap a torch model as a numpy predictor (eval mode, no grad)."""
    import torch

    model = model.to(device).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


def engine_predict_fn(engine) -> PredictFn:
    """An opened engine's runner as a predictor (its first output)."""
    return lambda x: next(iter(engine.runner.infer(x).values()))
