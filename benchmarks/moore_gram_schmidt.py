"""Where `moore`'s Gram–Schmidt costs, and an alternative tried and not adopted (issue 20): Cholesky-QR.

`moore:3` is `moe:3` plus the orthonormalization, and on the classic set (small trunks) that decides whether it
meets issue 20's speed target, K x 1.2 = 3.6 `shared`'s time per update.  The loop of K(K-1)/2 projections
(modified Gram–Schmidt, :func:`mtdqn.networks.experts.orthonormalize`) is dozens of reductions over one
sample's features, forward and backward; jaxlib 0.10's XLA:CPU hands each to YNNPACK unless the program says
otherwise, and `moore`'s training program does (:func:`mtdqn.train.loop.chunk_compiler_options`).  It can
also be replaced by the Gram matrix of the K outputs, its Cholesky factor unrolled per sample (K <= 8:
elementwise over the batch), and a forward substitution Q = L^-1 V, with the same zero-residual guard.  In
exact arithmetic it is the same basis (the guard's keep/drop decision is the same formula, but near its
threshold the Gram-based residual, a difference of nearly equal numbers, decides differently for some
samples).  This prints, for `moore:3` on the classic set (1 seed, as ``throughput.py --experts``), the time
per update inside the compiled loop of: `shared`; the loop as trained; the loop compiled with jaxlib's default
library fusions (reductions in YNNPACK); Cholesky-QR (as trained) — each in its own process, each round in
that fixed order; and how orthonormal each basis is for a third expert near the span of the first (relative
residual ``eps``):

    python benchmarks/moore_gram_schmidt.py [--iters 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def orthonormalize_cholesky(outputs):
    """(experts, ..., features) -> the same basis as modified Gram–Schmidt in exact arithmetic, by Cholesky-QR."""
    import jax
    import jax.numpy as jnp

    from mtdqn.networks.experts import RESIDUAL_TOL

    k_n = outputs.shape[0]
    gram = jnp.einsum("k...f,j...f->...kj", outputs, outputs)
    low = [[None] * k_n for _ in range(k_n)]
    inv = [None] * k_n
    for k in range(k_n):
        for j in range(k):
            acc = gram[..., k, j]
            for m in range(j):
                acc = acc - low[k][m] * low[j][m]
            low[k][j] = acc * inv[j]  # 0 against a dropped direction, as its zero basis vector gives
        d = gram[..., k, k]
        for m in range(k):
            d = d - low[k][m] ** 2
        keep = d > jnp.maximum(RESIDUAL_TOL**2 * gram[..., k, k], 1e-30)
        inv[k] = jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, d, 1.0)), 0.0)
    basis = []
    for k in range(k_n):
        w = outputs[k]
        for j in range(k):
            w = w - low[k][j][..., None] * basis[j]
        basis.append(w * inv[k][..., None])
    return jnp.stack(basis)


def _time(version: str, iters: int) -> float:
    """ms per update of the classic set's 1-seed row; call in a fresh process."""
    sys.path.insert(0, str(HERE))
    import throughput

    import mtdqn.networks.experts as experts

    if version == "cholesky":
        experts.orthonormalize = orthonormalize_cholesky  # mix_experts looks it up at trace time
    if version == "library-reductions":  # jaxlib's default library fusions: reductions in YNNPACK too
        import mtdqn.train.loop as loop

        loop.chunk_compiler_options = lambda *agents: None  # make_trainer looks it up when called
    sharing = "shared" if version == "shared" else "moore:3"
    return throughput.measure(throughput.CLASSIC, 1, sharing, chunks=3, iters=iters)["ms_per_iter"]


def _orthogonality() -> list[tuple[float, float, float]]:
    """(eps, max |Q Q^T - I| of modified Gram–Schmidt, of Cholesky-QR) for a third expert v0 + eps r."""
    import jax
    import jax.numpy as jnp

    from mtdqn.networks.experts import orthonormalize

    v = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 128, 64))
    r = jax.random.normal(jax.random.PRNGKey(1), v[0].shape)
    rows = []
    for eps in (3e-3, 1e-2, 1e-1):
        x = v.at[2].set(v[0] + eps * r)
        err = [float(jnp.abs(jnp.einsum("k...f,j...f->...kj", q, q) - jnp.eye(3)).max())
               for q in (orthonormalize(x), orthonormalize_cholesky(x))]
        rows.append((eps, *err))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: time one version in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_time(args.one, args.iters)))
        return
    rows = []
    for r in range(args.rounds):
        ms = {}
        for version in ("shared", "gram-schmidt", "library-reductions", "cholesky"):
            out = subprocess.run([sys.executable, __file__, "--one", version, "--iters", str(args.iters)],
                                 capture_output=True, text=True, check=True).stdout
            ms[version] = float(out.strip().splitlines()[-1])
        rows.append(ms)
    print(f"moore:3 on the classic set, 1 seed, {args.iters} updates per timed chunk (best of 3), each round's "
          "four processes in turn\n")
    print("| round | shared ms/update | moore:3, modified Gram–Schmidt (as trained) | the same, reductions in "
          "YNNPACK (jaxlib's default) | moore:3, Cholesky-QR | Cholesky vs MGS |")
    print("|---|---|---|---|---|---|")
    for i, ms in enumerate(rows, 1):
        print(f"| {i} | {ms['shared']:.2f} | {ms['gram-schmidt']:.2f} ({ms['gram-schmidt'] / ms['shared']:.2f}x) | "
              f"{ms['library-reductions']:.2f} ({ms['library-reductions'] / ms['shared']:.2f}x) | "
              f"{ms['cholesky']:.2f} ({ms['cholesky'] / ms['shared']:.2f}x) | "
              f"{100 * (ms['cholesky'] / ms['gram-schmidt'] - 1):+.0f}% |")
    print("\n| third expert's relative residual | max abs(Q Q^T - I), modified Gram–Schmidt | Cholesky-QR |")
    print("|---|---|---|")
    for eps, mgs, chol in _orthogonality():
        print(f"| {eps:g} | {mgs:.1e} | {chol:.1e} |")


if __name__ == "__main__":
    main()
