#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests.
#
# Needs only the Rust toolchain. Tests that need external services start them here (the Kafka
# broker arrives with the streaming service); none are needed yet.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo test"
# Benches are compiled by clippy above; they are run with `cargo bench`, not here.
cargo test
