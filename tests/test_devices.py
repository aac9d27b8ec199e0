"""Seeds split over local devices: the layout rule, and that splitting changes nothing but rounding."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.config import DQNConfig, TrainConfig
from mtdqn.devices import cpu_plan, padded_seeds, seed_devices, seed_layout, use_cpu_cores
from mtdqn.errors import ConfigError
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys

SMALL = TrainConfig(
    tasks=("CartPole-v1",), steps=1000, seeds=2, log_every=500, num_envs=4,
    dqn=DQNConfig(learning_starts=200, buffer_size=500, batch_size=32, target_update_every=50, tau=1.0),
)


@functools.cache
def _trainer(seeds: int, devices: int):
    """SMALL's trainer for ``seeds`` over ``devices``, built once: the padded-layout test runs the programs that the
    3-seed split test traced (a trainer holds no state; run_chunk donates the state it is given)."""
    return make_trainer(make_agent(dataclasses.replace(SMALL, seeds=seeds)), devices)


def test_the_device_count_is_chosen_once_per_process():
    """A started backend keeps its devices: a later request is refused (False), not half-applied."""
    before = jax.local_device_count()
    assert use_cpu_cores(before + 2) is False
    assert jax.local_device_count() == before


@pytest.mark.parametrize("seeds, requested, expected", [
    (1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 0, 2), (5, 0, 2), (4, 1, 1), (2, 2, 2), (3, 2, 2), (3, 1, 1),
])
def test_layout_rule(seeds, requested, expected):
    assert seed_devices(seeds, requested) == expected


@pytest.mark.parametrize("seeds, cores, devices, padded", [
    (3, 2, 2, 4), (5, 2, 2, 6), (9, 8, 5, 10), (10, 8, 5, 10), (6, 8, 6, 6), (7, 4, 4, 8), (1, 8, 1, 1),
])
def test_the_fewest_devices_that_give_the_fewest_seeds_per_device(seeds, cores, devices, padded):
    assert seed_layout(seeds, cores) == devices
    assert padded_seeds(seeds, devices) == padded


@pytest.mark.parametrize("seeds, requested, message", [
    (2, 3, "only 2 local device"), (1, 2, "more devices than seeds"), (2, -1, "must be >= 0"),
])
def test_impossible_layouts_are_one_line_errors(seeds, requested, message):
    with pytest.raises(ConfigError, match=message):
        seed_devices(seeds, requested)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [2, 3])
def test_split_seeds_agree_with_one_device_up_to_rounding(seeds):
    """Each device holds its own seeds' whole state; a seed mixed up with another would differ grossly.

    With 3 seeds the second device trains the third seed beside a dummy one, which must not leak out.
    """
    params, metrics = {}, {}
    for devices in (1, 2):
        trainer = _trainer(seeds, devices)
        assert trainer.devices == devices
        state = trainer.init(seed_keys(list(range(seeds))))
        state, metrics[devices] = trainer.run_chunk(state, jnp.int32(0))  # 125 iterations, 75 with an update
        for leaf in jax.tree.leaves((state, metrics[devices])):
            assert leaf.shape[0] == seeds and len(leaf.sharding.device_set) == devices
        assert float(np.asarray(metrics[devices]["updates"]).min()) > 0
        params[devices] = [np.asarray(x) for x in jax.tree.leaves(state.params)]
    for one, two in zip(params[1] + jax.tree.leaves(metrics[1]), params[2] + jax.tree.leaves(metrics[2])):
        np.testing.assert_allclose(np.asarray(one), np.asarray(two), rtol=1e-3, atol=1e-5)
    assert not np.allclose(params[1][0][0], params[2][0][1])  # and the seeds themselves differ


@pytest.mark.parametrize("seeds, tasks, requested, expected", [
    (1, ("CartPole-v1", "Acrobot-v1"), 0, (1, 1)),  # MLP: one pool thread per device
    (4, ("CartPole-v1",), 0, (4, 4)),
    (6, ("CartPole-v1",), 0, (6, 6)),
    (10, ("CartPole-v1",), 0, (5, 5)),  # the largest divisor of the seeds within 8 cores
    (1, ("Breakout-MinAtar", "Asterix-MinAtar:reward_scale=2"), 0, (1, 8)),  # convs use every core
    (2, ("gym:CartPole-v1",), 0, (2, 8)),
    (1, ("MiniGrid-DoorKey-6x6-v0", "MiniGrid-MemoryS11-v0:max_steps=100"), 0, (1, 8)),  # image by its facts
    (2, ("CartPole-v1",), 1, (1, 1)),
])
def test_cpu_plan(monkeypatch, seeds, tasks, requested, expected):
    monkeypatch.setattr("mtdqn.devices._usable_cores", lambda: 8)
    assert cpu_plan(seeds, tasks, requested) == expected


_POOL_THREADS = "sum('Eigen' in open(f'/proc/self/task/{t}/comm').read() for t in os.listdir('/proc/self/task'))"


def _in_fresh_process(code: str) -> list[str]:
    """Run ``code`` in a new Python (JAX starts once per process) on Linux with 2+ cores; its printed words."""
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux and two cores")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.slow
def test_a_narrow_pool_starts_with_one_thread_and_gives_the_cores_back():
    """In a fresh process: one device, one XLA pool thread, all cores usable after."""
    code = (
        "import os\nfrom mtdqn.devices import use_cpu_cores\nbefore = os.sched_getaffinity(0)\n"
        "assert use_cpu_cores(1, 1)\nimport jax, jax.numpy as jnp\njnp.ones(3).block_until_ready()\n"
        f"print(jax.local_device_count(), {_POOL_THREADS}, os.sched_getaffinity(0) == before)\n"
    )
    assert _in_fresh_process(code) == ["1", "1", "True"]


_RANDOM_PROGRAM = (
    "import jax, jax.numpy as jnp\n"
    "def draws(seed):\n"
    "    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)\n"
    "    return (jax.random.key_data(jax.random.split(k1, 5)), jax.random.randint(k2, (64,), 0, 10_000),\n"
    "            jax.random.bits(k3, (7, 3)), jax.random.uniform(jax.random.fold_in(k3, 11), (9,)))\n"
)


@pytest.mark.slow
def test_unrolled_threefry_draws_the_same_bits_and_has_no_loop():
    """The unrolled lowering (the CLI installs it) against JAX's rolled one, each in a process of its own (the
    lowering is process-wide); the environment that keeps the rolled one: MTDQN_ROLLED_THREEFRY=1, or XLA's
    optimizations off (the suite's setting, where the unrolled hash compiles slower)."""
    code = (_RANDOM_PROGRAM + "from mtdqn.devices import unroll_cpu_threefry\nunrolled = unroll_cpu_threefry()\n"
            "print(unrolled, ' while(' in jax.jit(draws).lower(123).compile().as_text())\n"
            "print([jnp.ravel(x).view(jnp.uint32).tolist() for x in jax.jit(draws)(123)])\n")
    base = {k: v for k, v in os.environ.items() if k not in ("MTDQN_ROLLED_THREEFRY", "JAX_DISABLE_MOST_OPTIMIZATIONS")}

    def run(**env: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**base, "JAX_PLATFORMS": "cpu", **env})
        return out.stdout.strip().splitlines()

    unrolled, rolled = run(), run(MTDQN_ROLLED_THREEFRY="1")
    assert unrolled[0] == "True False" and rolled[0] == "False True"
    assert unrolled[1] == rolled[1]
    assert run(JAX_DISABLE_MOST_OPTIMIZATIONS="1")[0] == "False True"


@pytest.mark.slow
def test_building_a_trainer_leaves_the_rng_lowering_alone():
    """A process-wide lowering is the program's choice (the CLI's), not a side effect of make_trainer.  The process
    compiles with XLA's optimizations, as users do: without them (make test's second phase) the unrolled lowering
    refuses itself (test_unrolled_threefry_draws_the_same_bits_and_has_no_loop), whatever make_trainer calls."""
    code = (
        "import os\nos.environ.pop('JAX_DISABLE_MOST_OPTIMIZATIONS', None)\n"
        "import jax\nfrom mtdqn.config import TrainConfig\nfrom mtdqn.train.agent import make_agent\n"
        "from mtdqn.train.loop import make_trainer\nmake_trainer(make_agent(TrainConfig(steps=100, log_every=100)))\n"
        "hlo = jax.jit(lambda k: jax.random.split(k, 3)).lower(jax.random.PRNGKey(0)).compile().as_text()\n"
        "print(' while(' in hlo)\n"
    )
    assert _in_fresh_process(code) == ["True"]


@pytest.mark.parametrize("argv, expected", [
    (["study", "quick", "--seeds", "3"], ((3, 3), {})),
    (["study", "quick", "--seeds", "9"], ((5, 5), {})),  # the plan from the study's seeds and tasks
    (["study", "quick", "--seeds", "4", "--devices", "2"], ((2, 2), {})),
    (["study", "quick", "--ray-address", "local"], ((), {})),  # cells plan on their workers
    (["study", "no-such-study"], ((), {})),  # the study command reports the error itself
    (["train", "--tasks", "Breakout-MinAtar", "--seeds", "2"], ((2, 8), {})),
    (["tasks"], ((), {})),
])
def test_the_cli_plans_devices_before_jax_starts(monkeypatch, argv, expected):
    from mtdqn.cli import entry as cli

    calls = []
    monkeypatch.setattr("mtdqn.devices._usable_cores", lambda: 8)
    monkeypatch.setattr("mtdqn.devices.use_cpu_cores", lambda *a, **k: calls.append((a, k)))
    cli._start_jax(cli._parse(argv))
    assert calls == [expected]


@pytest.mark.slow
def test_padded_layout_resumes_bit_identical(tmp_path):
    """3 seeds on 2 devices: a chunk depends only on the real seeds' state, so a checkpoint between chunks
    (which holds no dummy seed) continues exactly as the uninterrupted run."""
    from mtdqn.checkpoint import load_checkpoint, save_checkpoint

    trainer = _trainer(3, 2)
    n = trainer.agent.derived.iters_per_chunk
    whole = trainer.init(seed_keys([0, 1, 2]))
    for chunk in range(2):
        whole, _ = trainer.run_chunk(whole, jnp.int32(chunk * n))
    first, _ = trainer.run_chunk(trainer.init(seed_keys([0, 1, 2])), jnp.int32(0))
    save_checkpoint(tmp_path, trainer.agent.cfg, first, 1)
    template = trainer.init(seed_keys([0, 1, 2]))
    resumed, meta = load_checkpoint(tmp_path, trainer.agent.cfg, template)
    assert meta["chunk"] == 1
    resumed, _ = trainer.run_chunk(resumed, jnp.int32(n))
    for x, y in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_a_study_plans_before_jax_starts():
    """In a fresh process: planning from the study's table must not start JAX (validating the spec would)."""
    code = (
        "import os\nfrom mtdqn.cli import entry as cli\n"
        "cli._start_jax(cli._parse(['study', 'quick', '--seeds', '1']))\n"
        f"import jax\nprint(jax.local_device_count(), {_POOL_THREADS})\n"
    )
    assert _in_fresh_process(code) == ["1", "1"]  # one seed: one device, one pool thread (not one per core)
