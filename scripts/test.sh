#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests, with a real
# Kafka-compatible broker for the streaming tests.
#
# Needs only the Rust toolchain. The broker is tansu (a Kafka-compatible broker in Rust): installed
# with cargo if missing (the first build takes a while; it is cached in ~/.cargo/bin), started on a
# free loopback port with in-memory storage, and stopped at exit. To use another broker instead,
# set DRIFTWATCH_TEST_BROKERS=host:port before running this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

if [[ -z "${DRIFTWATCH_TEST_BROKERS:-}" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v tansu >/dev/null || [[ "$(tansu --version 2>/dev/null)" != *0.6.0* ]]; then
    echo "== installing the tansu broker (cargo install tansu --version 0.6.0)"
    cargo install tansu --version 0.6.0 --features dynostore --locked
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$(mktemp -t tansu.XXXXXX.log)
  echo "== starting tansu on 127.0.0.1:$port (log: $log)"
  tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$log" 2>&1 &
  tansu_pid=$!
  trap 'kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$tansu_pid" 2>/dev/null; then echo "tansu exited:"; cat "$log"; exit 1; fi
    sleep 0.1
  done
  export DRIFTWATCH_TEST_BROKERS="127.0.0.1:$port"
fi

echo "== cargo test (broker: $DRIFTWATCH_TEST_BROKERS)"
# Benches are compiled by clippy above; they are run with `cargo bench`, not here.
cargo test
