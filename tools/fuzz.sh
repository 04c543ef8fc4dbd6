#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS] [TARGET...] — bounded coverage-guided fuzzing (cargo-fuzz, libFuzzer
# with AddressSanitizer) of dpsd's parsers: message bodies and the configuration files.
#
#   SECONDS  time per target (default 30), passed to libFuzzer as -max_total_time
#   TARGET   some of: message_parse worker_config main_config job_config (default: all)
#
# Builds fuzz/ (its own workspace and target dir, fuzz/target; the main build is untouched),
# then runs each target in turn on the committed seeds fuzz/corpus/T plus what earlier runs
# found, fuzz/corpus-run/T (git-ignored; new inputs go there). Prints one line per target:
#   fuzz: TARGET runs=N exec/s=N corpus=N result=ok|crash|timeout|oom|error [ARTIFACT]
# and exits 1 when any target failed. A failing input is kept in fuzz/artifacts/T/;
# replay it with: fuzz/target/x86_64-unknown-linux-gnu/release/T fuzz/artifacts/T/crash-...
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
shift || true
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "usage: tools/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2; }

cargo_fuzz=$("$root/scripts/ensure-cargo-fuzz.sh")
fuzz=$root/fuzz
triple=x86_64-unknown-linux-gnu
bin_dir=$fuzz/target/$triple/release
logs=$fuzz/target/fuzz-logs
mkdir -p "$logs"

cd "$root"
# Stable toolchain only: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address,
# sancov passes); RUSTC_BOOTSTRAP=1 lets stable rustc accept them. See
# scripts/ensure-cargo-fuzz.sh. Only the cargo-fuzz invocation sees it.
echo "fuzz: building the targets (fuzz/target; the first build takes several minutes)..." >&2
RUSTC_BOOTSTRAP=1 "$cargo_fuzz" fuzz build --target-dir "$fuzz/target" >"$logs/build.log" 2>&1 ||
  { tail -n 30 "$logs/build.log" >&2; echo "fuzz: build failed (log: $logs/build.log)" >&2; exit 1; }

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(RUSTC_BOOTSTRAP=1 "$cargo_fuzz" fuzz list)
fi

# DPSD_SECTION__KEY variables would be layered over main_config's inputs: keep them out.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^DPSD_' || true)
# main_config and job_config write each input to a file under TMPDIR: a tmpfs is faster.
scratch_parent=/dev/shm
[[ -d $scratch_parent && -w $scratch_parent ]] || scratch_parent=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$scratch_parent/dpsd-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

failed=0
for target in "${targets[@]}"; do
  binary=$bin_dir/$target
  [[ -x $binary ]] || { echo "fuzz: $target runs=0 exec/s=0 corpus=0 result=error (no such target)"; failed=1; continue; }
  seeds=$fuzz/corpus/$target
  grown=$fuzz/corpus-run/$target
  artifacts=$fuzz/artifacts/$target
  mkdir -p "$seeds" "$grown" "$artifacts"
  log=$logs/$target.log
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GiB is an out-of-memory.
  # New inputs are written to the first corpus folder only, so the seeds stay as committed.
  status=0
  TMPDIR=$scratch "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$grown" "$seeds" >"$log" 2>&1 || status=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "$grown" -type f | wc -l)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  if ((status == 0)); then
    result=ok
  else
    failed=1
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then result=timeout
    elif grep -q -e 'ERROR: libFuzzer: out-of-memory' -e 'malloc limit' "$log"; then result=oom
    elif [[ -n $artifact ]]; then result=crash
    else result=error
    fi
    echo "fuzz: $target failed (exit $status); log: $log" >&2
    grep -m 5 -e 'panicked at' -e '^==[0-9]*==ERROR' "$log" >&2 || tail -n 15 "$log" >&2
  fi
  echo "fuzz: $target runs=${runs:-?} exec/s=${rate:-?} corpus=$corpus result=$result${artifact:+ $artifact}"
done
exit "$failed"
