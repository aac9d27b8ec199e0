"""Where `moore:3`'s extra time per update goes on the classic set, and what XLA:CPU's library fusions cost.

Two measurements, each version in its own process, inside the compiled loop (``throughput.measure``: the
classic set, 1 seed, the table's settings, best of 3 timed chunks), the versions interleaved ``--rounds``
times and printed as they finish (ms per update):

``--parts``: `moore:3`'s Gram–Schmidt replaced in turn: ``full`` (as it is), ``identity`` (then `moore:3` is
`moe:3` with the basis scaled), ``normalize-only`` (each expert's output normalized, no projections),
``forward-only`` (the basis computed forward, the identity's gradient backward); beside ``shared`` and
``moe:3``.  ``--library-reductions`` compiles `moore`'s program as jaxlib does by default, as it was before
``mtdqn.train.loop.chunk_compiler_options`` (the README's breakdown is of that program).

``--fusions``: rows trained under XLA:CPU's library-fusion setting ``xla_cpu_experimental_ynn_fusion_type``
for every program of the process (``XLA_FLAGS``): jaxlib's default (single matmuls and reductions to
YNNPACK), ``individual_dot`` (matmuls alone; what ``mtdqn.train.loop.chunk_compiler_options`` gives
`moore`'s training program) and ``dot`` (YNNPACK's fused matmuls), on CartPole alone and the classic set's
``shared``, ``moe:3`` and ``moore:3`` (each row's own number of updates per chunk; ``--iters`` is for
``--parts``).

``--kernels``: the fused kernels and the reductions sent to YNNPACK in the training programs of `moe:3` and
`moore:3` (jaxlib's default and as trained), classic set, 1 seed; nothing timed.

    python benchmarks/moore_parts.py --parts [--rounds 2] [--iters 2000] [--library-reductions]
    python benchmarks/moore_parts.py --fusions [--rounds 2]
    python benchmarks/moore_parts.py --kernels
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
        loop.chunk_compiler_options = lambda *agents: None  # make_trainer looks it up when called
    tasks = ("CartPole-v1",) if tasks_kind == "cartpole" else throughput.CLASSIC
    return throughput.measure(tasks, 1, sharing, chunks=3, iters=iters)["ms_per_iter"]


def _kernels() -> list[tuple[str, int, int]]:
    """(version, fused kernels, reductions in YNNPACK) of the classic set's 1-seed training program."""
    sys.path.insert(0, str(HERE))
    import throughput

    import mtdqn.train.loop as loop
    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores
    from mtdqn.train.agent import make_agent

    use_cpu_cores(*cpu_plan(1, throughput.CLASSIC, 0))
    unroll_cpu_threefry()
    as_trained = loop.chunk_compiler_options
    rows = []
    for version, sharing, options in (("moe:3", "moe:3", as_trained), ("moore:3, jaxlib's default", "moore:3", None),
                                      ("moore:3, as trained", "moore:3", as_trained)):
        loop.chunk_compiler_options = options or (lambda *agents: None)
        trainer = loop.make_trainer(make_agent(throughput.table_config(throughput.CLASSIC, 1, sharing, 1, 100, 0)))
        text = trainer.chunk.lower(trainer.init(loop.seed_keys([0])), trainer.hypers, 0).compile().as_text()
        lines = [ln for ln in text.splitlines() if " = " in ln and " fusion(" in ln]
        rows.append((version, len(lines), sum("__ynn_fusion" in ln and "/reduce_sum" in ln for ln in lines)))
    return rows


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
    parser.add_argument("--kernels", action="store_true",
                        help="count the fused kernels and YNNPACK reductions of moe:3's and moore:3's programs")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)  # internal: kind sharing iters gs library
    args = parser.parse_args()
    if args.one:
        kind, sharing, iters, gs, library = args.one
        print(json.dumps(_ms_per_update(kind, sharing, int(iters), gs, library == "1")))
        return
    if args.kernels:
        print("| training program (classic set, 1 seed) | fused kernels | reductions in YNNPACK |\n|---|---|---|")
        for version, fused, library in _kernels():
            print(f"| {version} | {fused} | {library} |")
        return
    if not (args.parts or args.fusions):
        parser.error("say --parts, --fusions or --kernels")
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
                    kept = os.environ.get("XLA_FLAGS", "")  # the user's other flags stay
                    ms = _run([kind, sharing, str(iters), "full", "1"], {"XLA_FLAGS": f"{kept} {flag}".strip()})
                    print(f"round {r} | fusions | {kind} {sharing} | {setting} | {ms:.3f} ms/update", flush=True)


if __name__ == "__main__":
    main()
