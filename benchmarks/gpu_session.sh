#!/bin/bash
# One lent-GPU call that trains study cells: each JOB (STUDY.toml:VARIANT[,VARIANT...]) in its own process, all
# at once on the one GPU (benchmarks/device_study.py, the ordinary study runner), stopped after SECONDS; then
# every finished cell (its summary.json written) and each study's study.json packed into OUT/cells.tar.gz,
# with one log per job (OUT/job_N.log).  A GPU session's machine is given back afterwards, so an unfinished
# cell is lost: size the jobs to the time.  Run from the repository root on the device, after installing what
# it lacks (PYTHONPATH set by the caller):
#   bash benchmarks/gpu_session.sh "$OUT" 480 benchmarks/results/minigrid_mt5.toml:moe \
#       benchmarks/results/minigrid_mt5.toml:moore benchmarks/results/minigrid_mt7.toml:shared,shared+rms
# Back here, unpack and let the study runner find the cells done (it writes the report):
#   mkdir -p /tmp/gs && tar xzf cells.tar.gz -C /tmp/gs   # then copy /tmp/gs/mt5-*/cells/* into STUDY/cells/
#   mtdqn study benchmarks/results/minigrid_mt5.toml --out STUDY
out=${1:?usage: gpu_session.sh OUT_DIR SECONDS STUDY.toml:VARIANTS ...}
limit=${2:?usage: gpu_session.sh OUT_DIR SECONDS STUDY.toml:VARIANTS ...}
shift 2
[ $# -gt 0 ] || { echo "error: no STUDY.toml:VARIANTS job given" >&2; exit 2; }
work=/tmp/gpu_session
mkdir -p "$out" "$work"
fraction=$(python3 -c "print(round(0.9 / $#, 3))")  # each process's share of the GPU's memory
i=0
for job in "$@"; do
  toml=${job%%:*}; variants=${job#*:}
  [ -f "$toml" ] && [ "$variants" != "$job" ] || { echo "error: bad job $job (want STUDY.toml:VARIANTS)" >&2; exit 2; }
  XLA_PYTHON_CLIENT_MEM_FRACTION=$fraction PYTHONUNBUFFERED=1 timeout -k 10 "$limit" \
    python3 benchmarks/device_study.py "$toml=$work/$(basename "$toml" .toml)-$i" --variants "$variants" \
    > "$out/job_$i.log" 2>&1 &
  i=$((i + 1))
done
wait
cd "$work" || exit 1
finished=$(ls -d ./*/cells/*/summary.json 2>/dev/null | xargs -r -n1 dirname)
echo "finished cells: ${finished:-none}"
[ -n "$finished" ] && tar czf "$out/cells.tar.gz" --exclude=checkpoints $finished ./*/study.json
for f in "$out"/job_*.log; do echo "== $f"; grep -v -i warning "$f" | tail -4; done
