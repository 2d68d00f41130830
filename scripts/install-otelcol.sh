#!/usr/bin/env bash
# Builds the OpenTelemetry Collector the tests run (test/otel-collector/manifest.yaml) into
# .tools/bin/otelcol-signalbox-test (git-ignored), with the Collector's builder at the same pinned
# release, when it is missing or the manifest changed. Needs Go; about a minute the first time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILDER_VERSION="v0.165.0"
manifest="$root/test/otel-collector/manifest.yaml"
bin="$root/.tools/bin"
out="$bin/otelcol-signalbox-test"
stamp="$out.sha256"
want="$(sha256sum "$manifest" | cut -d' ' -f1) $BUILDER_VERSION"
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
command -v go >/dev/null 2>&1 || { echo "install-otelcol: Go is required to build the OpenTelemetry Collector" >&2; exit 1; }
mkdir -p "$bin" "$root/.tools/otelcol-build"
echo "install-otelcol: building the OpenTelemetry Collector ${BUILDER_VERSION} (about a minute the first time)" >&2
GOBIN="$root/.tools/otelcol-build" go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
log="$root/.tools/otelcol-build/build.log"
"$root/.tools/otelcol-build/builder" --config "$manifest" --output-path "$root/.tools/otelcol-build/dist" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
cp "$root/.tools/otelcol-build/dist/otelcol-signalbox-test" "$out"
echo "$want" > "$stamp"
echo "install-otelcol: built $out" >&2
