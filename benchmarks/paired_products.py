"""Would pairing the online and the target network's forward products pay?  A lever measured, not built.

One seed's update runs the 120→84 layer's forward product twice on 128 rows: the online network on the
observations, the target network on the next ones (different weights, so not one 256-row product).  This
times, in a ``lax.scan`` of 2,000 steps on one device with one XLA thread (as ``mtdqn train`` runs one
seed), the two products apart, as one batched product of both (``einsum`` over a pair axis), and one
256-row product with one weight (the same FLOPs, for scale), alternated over rounds, the best of each:

    python benchmarks/paired_products.py [--rounds 3]

The README's *Performance* reads the difference against one seed's iteration.  The backward pass has no
such pair (the weight and input gradients differ in shape), and autodiff through a batched pair would
compute the target's half of the backward as well, so the pairing would need a custom VJP per layer kind.
"""

from __future__ import annotations

import argparse
import time

ROWS, IN, OUT, STEPS = 128, 120, 84, 2_000


def _timed(body, carry) -> float:
    """µs per step of ``body`` scanned STEPS times, compile excluded, the best of 3 runs."""
    import jax

    run = jax.jit(lambda c: jax.lax.scan(body, c, None, length=STEPS)[0])
    jax.block_until_ready(run(carry))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(run(carry))
        best = min(best, time.perf_counter() - t)
    return best / STEPS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    from mtdqn.devices import use_cpu_cores  # JAX starts here, after the arguments are checked

    use_cpu_cores(1, threads=1)
    import jax
    import jax.numpy as jnp

    key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key_x, (2, ROWS, IN))
    w = jax.random.normal(key_w, (2, IN, OUT)) * 0.1

    def step(products):  # each step's inputs move by a function of its outputs, so no step can be skipped
        def body(carry, _):
            xs, ws = carry
            return (xs + 1e-6 * jnp.tanh(products(xs, ws).sum()), ws), None
        return body

    bodies = {
        "two products (online, target)": step(lambda xs, ws: jnp.stack([xs[0] @ ws[0], xs[1] @ ws[1]])),
        "one batched product of the pair": step(lambda xs, ws: jnp.einsum("bmk,bkn->bmn", xs, ws)),
        "one 256-row product, one weight": step(lambda xs, ws: xs.reshape(2 * ROWS, IN) @ ws[0]),
    }
    best = {name: float("inf") for name in bodies}
    for _ in range(rounds):
        for name, body in bodies.items():
            best[name] = min(best[name], _timed(body, (x, w)))
    print(f"| {ROWS}×{IN}×{OUT} products, µs per step (best of {rounds} rounds) | µs |")
    print("|---|---|")
    for name, us in best.items():
        print(f"| {name} | {us:.1f} |")
    saved = best["two products (online, target)"] - best["one batched product of the pair"]
    print(f"\npairing saves {saved:.1f} µs per update of this layer")


if __name__ == "__main__":
    main()
