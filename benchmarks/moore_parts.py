"""Where `moore:3`'s extra time per update goes on the classic set, and what XLA:CPU's library fusions cost.

Two measurements, each version in its own process, inside the compiled loop (``throughput.measure``: the
classic set, 1 seed, the table's settings, best of 3 timed chunks), the versions interleaved ``--rounds``
times and printed as they finish (ms per update):

``--parts``: `moore:3`'s Gram–Schmidt replaced in turn (as of 2026-12-04 before ``chunk_compiler_options``,
run it with ``--library-reductions`` to see that program): ``identity`` (then `moore:3` is `moe:3` with the
basis scaled), ``normalize-only`` (each expert's output normalized, no projections), ``forward-only`` (the
basis computed forward, the identity's gradient backward), ``full``; beside ``shared`` and ``moe:3``.

``--fusions``: rows trained under XLA:CPU's library-fusion setting ``xla_cpu_experimental_ynn_fusion_type``
for every program of the process (``XLA_FLAGS``): jaxlib's default (single matmuls and reductions to
YNNPACK), ``individual_dot`` (matmuls alone; what ``mtdqn.train.loop.chunk_compiler_options`` gives
`moore`'s training program) and ``dot`` (YNNPACK's fused matmuls), on CartPole alone and the classic set's
``shared``, ``moe:3`` and ``moore:3``.

    python benchmarks/moore_parts.py --parts [--rounds 2] [--iters 2000] [--library-reductions]
    python benchmarks/moore_parts.py --fusions [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("shared", "moe", "full", "identity", "normalize-only", "forward-only")
FUSION_ROWS = (("cartpole", "shared", 2000), ("classic", "moore:3", 1000), ("classic", "shared", 2000),
               ("classic", "moe:3", 1000))
FUSION_SETTINGS = ("default", "individual_dot", "dot")


def _ms_per_update(tasks_kind: str, sharing: str, iters: int, gram_schmidt: str = "full",
                   library_reductions: bool = False) -> float:
    """One row's time per update; call in a fresh process (JAX starts here, as `mtdqn train` starts it)."""
    sys.path.insert(0, str(HERE))
    import jax
    import jax.numpy as jnp
    import throughput

    import mtdqn.networks.experts as experts
    import mtdqn.train.loop as loop

    full = experts.orthonormalize
    replacement = {
        "identity": lambda v: v,
        "normalize-only": lambda v: v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12),
        "forward-only": lambda v: v + jax.lax.stop_gradient(full(v) - v),
    }.get(gram_schmidt)
    if replacement is not None:
        experts.orthonormalize = replacement  # mix_experts looks it up at trace time
    if library_reductions:
        loop.chunk_compiler_options = lambda agent: None  # make_trainer looks it up when called
    tasks = ("CartPole-v1",) if tasks_kind == "cartpole" else throughput.CLASSIC
    return throughput.measure(tasks, 1, sharing, chunks=3, iters=iters)["ms_per_iter"]


def _run(args: list[str], env: dict[str, str] | None = None) -> float:
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--fusions", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--library-reductions", action="store_true",
                        help="--parts: compile moore's program with jaxlib's default library fusions")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)  # internal: kind sharing iters gs library
    args = parser.parse_args()
    if args.one:
        kind, sharing, iters, gs, library = args.one
        print(json.dumps(_ms_per_update(kind, sharing, int(iters), gs, library == "1")))
        return
    if not (args.parts or args.fusions):
        parser.error("say --parts or --fusions")
    library = "1" if args.library_reductions else "0"
    for r in range(1, args.rounds + 1):
        if args.parts:
            for part in PARTS:
                sharing = {"shared": "shared", "moe": "moe:3"}.get(part, "moore:3")
                ms = _run(["classic", sharing, str(args.iters), part, library])
                print(f"round {r} | parts | {part} | {ms:.3f} ms/update", flush=True)
        if args.fusions:
            for kind, sharing, iters in FUSION_ROWS:
                for setting in FUSION_SETTINGS:
                    flag = "" if setting == "default" else f"--xla_cpu_experimental_ynn_fusion_type={setting}"
                    # the flag is process-wide, so moore's per-program option is left out: the flag decides
                    ms = _run([kind, sharing, str(iters), "full", "1"], {"XLA_FLAGS": flag})
                    print(f"round {r} | fusions | {kind} {sharing} | {setting} | {ms:.3f} ms/update", flush=True)


if __name__ == "__main__":
    main()
