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

if [[ -z "${DRIFTWATCH_TEST_MMDB:-}" ]]; then
  # A real country database in MaxMind DB format for the enrichment tests: ip-location-db's
  # geo-whois-asn-country (npm package @ip-location-db/geo-whois-asn-country-mmdb, CC0 / data
  # CC BY 4.0 by NRO), a pinned version checked against the registry's SHA-1, cached.
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/driftwatch"
  mmdb="$cache/geo-whois-asn-country-2.3.2026061719.mmdb"
  if [[ ! -s "$mmdb" ]]; then
    echo "== fetching a country database (npm: @ip-location-db/geo-whois-asn-country-mmdb)"
    mkdir -p "$cache"
    tgz="$cache/geo.tgz"
    curl -fsSL --retry 3 -o "$tgz" \
      https://registry.npmjs.org/@ip-location-db/geo-whois-asn-country-mmdb/-/geo-whois-asn-country-mmdb-2.3.2026061719.tgz
    echo "d83ce8ab70533e271d7e96bc50d8d816cf4f4470  $tgz" | sha1sum -c --quiet
    tar -xzf "$tgz" -C "$cache" package/geo-whois-asn-country.mmdb
    mv "$cache/package/geo-whois-asn-country.mmdb" "$mmdb"
    rm -rf "$tgz" "$cache/package"
  fi
  export DRIFTWATCH_TEST_MMDB="$mmdb"
fi

echo "== cargo test (broker: $DRIFTWATCH_TEST_BROKERS)"
# Benches are compiled by clippy above; they are run with `cargo bench`, not here.
cargo test
