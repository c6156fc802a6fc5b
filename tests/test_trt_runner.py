"""The TensorRT runner's handling of TensorRT's ``False`` answers, through its seams (``cuda``, ``engine``,
``context``): set_tensor_address, set_input_shape, execute_async_v3, CUDA-graph capture and the batch profile.

No GPU or TensorRT here: the doubles in ``fixtures_trt`` record calls and answer True/False as told; nothing
reads an inference result from them.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_trt import runner_on_doubles

from edgeres.errors import EdgeresError


def batch(n: int) -> np.ndarray:
    return np.zeros((n, 3, 8, 8), np.float32)


def calls(runner, name: str) -> list:
    return [c for c in runner.context.calls if c[0] == name]


def test_refused_tensor_address_is_an_error():
    with pytest.raises(EdgeresError, match=r"refused the device address of tensor 'input'.*set_tensor_address"):
        runner_on_doubles(answers={"set_tensor_address": False})


def test_refused_input_shape_is_an_error_not_a_run_with_the_old_shape():
    runner = runner_on_doubles(answers={"set_input_shape": False})
    with pytest.raises(EdgeresError, match=r"refused input 'input' of shape \(2, 3, 8, 8\).*profile is 1\.\.8"):
        runner.infer(batch(2))
    assert calls(runner, "execute_async_v3") == []  # nothing ran with the previous shape


def test_batch_below_the_profile_minimum_is_refused_before_tensorrt_is_asked():
    runner = runner_on_doubles(profile=(4, 4, 8))
    with pytest.raises(EdgeresError, match=r"batch 1 is outside this engine's batch profile 4\.\.8.*--min-batch"):
        runner.infer(batch(1))
    assert calls(runner, "set_input_shape") == [] and calls(runner, "execute_async_v3") == []


def test_fixed_batch_engine_names_dla():
    runner = runner_on_doubles(profile=(4, 4, 4))
    with pytest.raises(EdgeresError, match="DLA engine runs one fixed batch"):
        runner.infer(batch(2))


def test_refused_enqueue_is_an_error():
    runner = runner_on_doubles(answers={"execute_async_v3": False})
    with pytest.raises(EdgeresError, match=r"could not enqueue.*execute_async_v3 returned False"):
        runner.infer(batch(1))


def test_input_shape_is_set_only_when_it_changes():
    runner = runner_on_doubles()
    for n in (1, 1, 2):
        runner.infer(batch(n))
    assert [c[2][0] for c in calls(runner, "set_input_shape")] == [1, 2]


def test_failed_capture_is_dropped_and_never_replayed():
    # warm-up enqueue succeeds, the enqueue inside the capture fails
    runner = runner_on_doubles(cuda_graph=True, answers={"execute_async_v3": [True, False, True, True]})
    with pytest.raises(EdgeresError, match=r"CUDA-graph capture of the engine failed for batch 1.*--cuda-graph"):
        runner.infer(batch(1))
    assert runner.graphs == {} and not [c for c in runner.cuda.calls if c[0] == "launch"]
    runner.infer(batch(1))  # tried again from scratch: warm-up, capture, launch of the new graph
    assert runner.graphs == {1: 1} and ("launch", 1) in runner.cuda.calls


def test_one_graph_for_the_batch_the_context_is_set_to():
    runner = runner_on_doubles(cuda_graph=True)
    runner.infer(batch(1))
    runner.infer(batch(1))  # replay: no new capture, no shape change
    assert runner.cuda.graphs_made == 1 and len(calls(runner, "set_input_shape")) == 1
    runner.infer(batch(2))  # the context's shape changes: the batch-1 graph holds the old state
    assert runner.cuda.destroyed == [1] and runner.graphs == {2: 2}
    runner.infer(batch(1))  # captured again, never the stale graph 1
    assert runner.cuda.destroyed == [1, 2] and runner.graphs == {1: 3}
    assert [c for c in runner.cuda.calls if c[0] == "launch"] == [
        ("launch", 1),
        ("launch", 1),
        ("launch", 2),
        ("launch", 3),
    ]
    runner.deactivate()
    assert runner.cuda is None and runner.graphs == {}
