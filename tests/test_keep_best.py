"""Keep-best without stopping (train's keep_best): D'Eramo et al. 2020's --save-shared rule, the pretraining
trunk their transfer experiment grafts (mtdqn.train.early_stop)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import struct

from helpers import TINY

from mtdqn.cli import main
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.train.agent import make_agent
from mtdqn.train.early_stop import EarlyStopping, discounted_sums
from mtdqn.train.run import train

@struct.dataclass
class _State:
    params: dict
    target_params: dict


def _rows(step: int, sums: dict[int, tuple[float, float]]) -> list[dict]:
    return [{"step": step, "seed": seed, "task": task, "discounted_mean": value, "return_mean": 0.0}
            for seed, values in sums.items() for task, value in zip(("a", "b"), values)]


def test_the_best_sum_of_discounted_returns_is_kept_ties_to_the_later_and_nothing_stops():
    keep = EarlyStopping.keeping_best(2)
    # seed 0: sums 1, 3, 3 (a tie: the later one is kept); seed 1: 5, 2, 4 (the first)
    evaluations = [(100, {0: (0.5, 0.5), 1: (2.0, 3.0)}), (200, {0: (1.0, 2.0), 1: (1.0, 1.0)}),
                   (300, {0: (2.5, 0.5), 1: (3.0, 1.0)})]
    for step, sums in evaluations:
        rows = _rows(step, sums)
        scores = keep.scores(rows, ("a", "b"), [0, 1])
        np.testing.assert_allclose(scores, discounted_sums(rows, ("a", "b"), [0, 1]))
        params = {"w": jnp.array([step, step + 1], jnp.float32)}  # (seeds,): which step's parameters
        assert keep.observe(scores, params, step) is False  # never stops
    assert keep.best_step.tolist() == [300, 100] and keep.best_score.tolist() == [3.0, 5.0]
    state = keep.restore(_State({"w": jnp.zeros(2)}, {"w": jnp.zeros(2)}))
    assert state.params["w"].tolist() == [300.0, 101.0] == state.target_params["w"].tolist()
    record = keep.record([0, 1])
    assert record["best_step"] == {"0": 300, "1": 100} and "patience" not in record
    assert "discounted" in record["score"] and "later" in record["score"]


@pytest.mark.slow
def test_a_run_keeps_each_seeds_best_evaluation(tmp_path):
    """helpers.TINY evaluated after every chunk (500 env steps), as the session's tiny_run: the same programs."""
    result = train(TINY, tmp_path / "kb", progress=False, eval_episodes=2, eval_every=500, keep_best=True)
    kept = result.summary["keep_best"]
    end = TINY.steps
    assert "early_stop" not in result.summary and result.summary["env_steps"] == end  # ran to the end
    assert json.loads((tmp_path / "kb" / "config.json").read_text())["options"]["keep_best"] is True
    # the restored parameters are scored by their own final evaluation, and the summary says so
    s = result.summary
    assert s["final_score_rule"] == "restored-best-final-eval" and s["final_score_steps"] == [end]
    assert s["final_score"] == s["final_eval"] and s["final_score_discounted"] == s["final_eval_discounted"]
    evals = pd.read_parquet(tmp_path / "kb" / "evals.parquet")
    during = evals[evals["step"] < end].groupby(["seed", "step"])["discounted_mean"].sum()
    agent = make_agent(TINY)
    stream = eval_seed(TINY.seed, EvalStream.DURING_TRAINING)
    for s, seed in enumerate(agent.seeds):
        step, best = kept["best_step"][str(seed)], kept["best_score"][str(seed)]
        assert step in (500, 1000, 1500, end)  # the evaluation at the last step is a candidate
        mine = during.loc[seed]
        assert best >= mine.max() and (mine[mine.index > step] < best).all()  # the highest; ties to the later
        if step < end:
            assert best == pytest.approx(mine.loc[step])
        # the restored parameters are the ones that evaluation saw: the same episodes give the same returns
        again = evaluate_params(agent, result.state.params, stream, 2, eps=0.0, step=step)
        assert float(again.discounted[s].mean(-1).sum()) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("argv,message", [
    (["--keep-best", "True"], "--keep-best keeps the best evaluation's parameters in memory"),
    (["--keep-best", "True", "--eval-every", "300", "--patience", "2"], "takes neither --patience"),
])
def test_keep_best_needs_evaluations_and_no_stopping(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--tasks", "CartPole-v1", "--steps", "600", "--log-every", "300", "--learning-starts", "100",
              "--out", str(tmp_path / "r"), "--progress", "False", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()
