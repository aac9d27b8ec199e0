#!/bin/bash
# One lent-GPU call that trains study cells: each JOB (STUDY.toml:VARIANT[,VARIANT...]) in its own process, all
# at once on the one GPU (benchmarks/device_study.py, the ordinary study runner), stopped after SECONDS; then
# every cell that finished ok (summary.json with status "ok") and each job's study.json packed into
# OUT/cells.tar.gz, with one log per job (OUT/job_N.log).  A GPU session's machine is given back afterwards,
# so an unfinished cell is lost: size the jobs to the time.  Exit status: 0 if every job ended by itself, 1
# otherwise (a job stopped by the limit or failed; what finished is packed all the same), 2 for a bad job.
# Run from the repository root on the device, after installing what it lacks (PYTHONPATH set by the caller):
#   bash benchmarks/gpu_session.sh "$OUT" 420 benchmarks/results/minigrid_mt5.toml:moe \
#       benchmarks/results/minigrid_mt5.toml:moore benchmarks/results/minigrid_mt7.toml:shared,shared+rms
# Back here: each job's folder is STUDYNAME-N (minigrid_mt5-0, ...).  Put its cells beside the study's other
# finished cells, with a study.json, and build the report (what is not there is marked MISSING):
#   G=/tmp/gs && mkdir -p $G && tar xzf cells.tar.gz -C $G
#   S=/tmp/mt5 && mkdir -p $S/cells && cp -r $G/minigrid_mt5-*/cells/* benchmarks/results/minigrid_mt5_cpu/cells/* \
#       benchmarks/results/minigrid_mt5_gpu/cells/independent $S/cells/ && \
#       cp benchmarks/results/minigrid_mt5_cpu/study.json $S/ && mtdqn report $S
usage="usage: gpu_session.sh OUT_DIR SECONDS STUDY.toml:VARIANT[,VARIANT...] ..."
out=${1:?$usage}
limit=${2:?$usage}
shift 2
[ $# -gt 0 ] || { echo "error: no job given; $usage" >&2; exit 2; }
for job in "$@"; do  # every job checked before any starts
  toml=${job%:*}; variants=${job##*:}
  if [ "$toml" = "$job" ] || [ -z "$variants" ] || [ ! -f "$toml" ]; then
    echo "error: bad job '$job' (want an existing STUDY.toml, ':', and one or more variants)" >&2; exit 2
  fi
done
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
work=/tmp/gpu_session
mkdir -p "$work"
fraction=$(python3 -c "print(round(0.9 / $#, 3))")  # each process's share of the GPU's memory
pids=()
i=0
for job in "$@"; do
  toml=${job%:*}; variants=${job##*:}
  XLA_PYTHON_CLIENT_MEM_FRACTION=$fraction PYTHONUNBUFFERED=1 timeout -k 10 "$limit" \
    python3 benchmarks/device_study.py "$toml=$work/$(basename "$toml" .toml)-$i" --variants "$variants" \
    > "$out/job_$i.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
status=0
for n in "${!pids[@]}"; do
  wait "${pids[$n]}"; rc=$?
  echo "job $n: exit $rc"
  [ $rc -eq 0 ] || status=1
done
cd "$work" || exit 1
ok=()
for summary in ./*/cells/*/summary.json; do
  [ -f "$summary" ] && grep -q '"status": *"ok"' "$summary" && ok+=("$(dirname "$summary")")
done
echo "finished cells: ${ok[*]:-none}"
if [ ${#ok[@]} -gt 0 ]; then
  tar czf "$out/cells.tar.gz" --exclude=checkpoints "${ok[@]}" ./*/study.json || status=1
fi
for f in "$out"/job_*.log; do echo "== $f"; grep -v -i warning "$f" | tail -4; done
exit $status
