"""Where gymnax's Seaquest-MinAtar spends a step: each part of its ``step_env`` timed alone.

Each part runs for 10 envs under ``vmap`` inside one jitted ``lax.scan`` of 2,000 steps (as the training
loop steps envs), from a state 300 random steps into an episode; the best of 2 runs counts, in µs per
vector step.  Parts that XLA can hoist out of the scan read ~0.

    python benchmarks/seaquest_profile.py                 # gymnax as installed (100-row entity buffers)
    python benchmarks/seaquest_profile.py --capacity 20   # the same code with 20-row buffers

``--capacity`` rebinds gymnax's module constant ``MAX_ENTITIES`` in this process only: a counterfactual
for the profile, not a fix (the episode would diverge from MinAtar once a list outgrows the buffer).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=0, help="entity buffer rows (default: gymnax's 100)")
    parser.add_argument("--envs", type=int, default=10)
    args = parser.parse_args()

    from mtdqn.devices import use_cpu_cores

    use_cpu_cores()
    import gymnax
    import gymnax.environments.minatar.seaquest as sq
    import gymnax.environments.minatar.seaquest_helpers as helpers
    import jax

    if args.capacity:
        helpers.MAX_ENTITIES = sq.MAX_ENTITIES = args.capacity
    n = args.envs
    env, params = gymnax.make("Seaquest-MinAtar")
    _, state0 = jax.vmap(env.reset_env, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), params)

    def actions(k):
        return jax.random.randint(k, (n,), 0, 6)

    def warm(state, k):
        return jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(k, n), state, actions(k), params)[1], None

    state0, _ = jax.jit(lambda s: jax.lax.scan(warm, s, jax.random.split(jax.random.PRNGKey(1), 300)))(state0)

    def bench(label, part):
        run = jax.jit(lambda s, key: jax.tree.map(lambda x: x.sum(), jax.lax.scan(part, s, jax.random.split(key, 2000))[1]))
        jax.block_until_ready(run(state0, jax.random.PRNGKey(2)))
        best = float("inf")
        for i in range(2):
            t0 = time.perf_counter()
            jax.block_until_ready(run(state0, jax.random.PRNGKey(3 + i)))
            best = min(best, time.perf_counter() - t0)
        print(f"| {label} | {best / 2000 * 1e6:,.1f} |", flush=True)

    def first_two(out):
        return out[0], out[1]

    print(f"| Seaquest part ({n} envs, {helpers.MAX_ENTITIES}-row buffers) | µs per vector step |")
    print("|---|---|")
    bench("env.step (with auto-reset)", lambda s, k: first_two(jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(k, n), s, actions(k), params)[1:3]))
    bench("step_env", lambda s, k: first_two(jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
        jax.random.split(k, n), s, actions(k), params)[1:3]))
    bench("get_obs", lambda s, k: (s.replace(time=s.time + 1), jax.vmap(lambda x: env.get_obs(x, params))(
        s.replace(sub_x=(s.sub_x + s.time) % 10)).sum()))
    bench("_step_friendly_bullets (2 collisions)", lambda s, k: first_two(jax.vmap(env._step_friendly_bullets)(s)))
    bench("_step_enemy_subs", lambda s, k: first_two(jax.vmap(lambda x: env._step_enemy_subs(x, params))(s)))
    bench("_step_enemy_bullets", lambda s, k: first_two(jax.vmap(env._step_enemy_bullets)(s)))
    bench("_step_enemy_fish", lambda s, k: first_two(jax.vmap(env._step_enemy_fish)(s)))
    bench("_step_divers", lambda s, k: (jax.vmap(lambda x: env._step_divers(x, params))(s), s.time))
    bench("_step_timers", lambda s, k: first_two(jax.vmap(lambda x: env._step_timers(x, params))(s)))

    def one_compact(s, k):
        keep = jax.vmap(helpers.active_mask)(s.e_subs_count) & (s.e_subs[:, :, 0] != (s.time[:, None] % 10))
        subs, count = jax.vmap(helpers.compact)(s.e_subs, keep)
        return s.replace(e_subs=subs, e_subs_count=count, time=s.time + 1), count

    bench("one compact (a scatter-add of the rows)", one_compact)


if __name__ == "__main__":
    main()
