#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each with cargo-fuzz on the nightly
# toolchain, seeded from tests/fixtures; installs cargo-fuzz if missing. Crashes land in
# fuzz/artifacts/<target>/ and the run stops with exit 1 at the first target that finds one.
#
#   scripts/fuzz.sh 600            # ten minutes per target
#   scripts/fuzz.sh 60 decode      # one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode reader model inventory scrub)
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  # Seeds: every fixture line and file (the model target also gets the shipped model).
  if [ -z "$(ls -A "$corpus")" ]; then
    n=0
    while IFS= read -r f; do
      cp "$f" "$corpus/file-$n"; n=$((n + 1))
      head -n 20 "$f" | while IFS= read -r line; do
        printf '%s' "$line" > "$corpus/line-$n-$RANDOM"
      done
    done < <(find tests/fixtures -name '*.json' -o -name '*.jsonl' | sort)
    cp models/default.toml "$corpus/model"
  fi
  echo "== fuzz target $t for ${seconds}s"
  # No AddressSanitizer (`-s none`): the targets are safe Rust, and librdkafka's configure
  # cannot link the ASAN-instrumented zstd it is built with (it checks zstd by compiling a
  # program without the ASAN runtime). libFuzzer's coverage guidance is unaffected.
  cargo +nightly fuzz run -s none "$t" "$corpus" -- -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 | grep -E "^(#[0-9]+.*DONE|stat::|==|SUMMARY|Done)|panicked|ERROR" || true
  if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t found a failing input: fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
