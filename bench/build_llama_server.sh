#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the llama.cpp sources vendored in the
# llama-cpp-python sdist that gemserve pins, so both run the same llama.cpp revision.
#
# CPU only, Release, only the llama-server target; output under bench/out (git-ignored).
# Idempotent: does nothing when the binary already exists (pass --force to rebuild).
#
# Usage: bench/build_llama_server.sh [--force]
# Env:   PYTHON (default: .venv/bin/python of the repository), JOBS (default: nproc),
#        LLAMA_CPP_PYTHON_VERSION (default: 0.3.36, the version gemserve pins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# LLAMA_SERVER_OUT moves the build (the tests keep it in the user's cache, so a fresh clone
# does not build it again).
OUT="${LLAMA_SERVER_OUT:-$HERE/out}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
JOBS="${JOBS:-$(nproc)}"
SRC_PARENT="$OUT/src"
SRC="$SRC_PARENT/llama_cpp_python-$VERSION"
BUILD="$OUT/llama.cpp-build"
BIN="$BUILD/bin/llama-server"

# One build at a time per output folder (tests and benches may ask together); the second
# waits, then finds the binary.
mkdir -p "$OUT"
exec 9>"$OUT/.build.lock"
flock 9

# The CPU flags of the engine build setup installed and verified (the venv's marker): a
# native build can die by SIGILL on a CPU that claims more than it runs (Intel with AMX), and
# setup then falls back to a generic one; llama-server must run on the same CPU, so it gets
# the same GGML_* flags (not llama-cpp-python's target trimming). Without a marker: native.
MARKER="$(dirname "$(dirname "$PYTHON")")/gemserve-engine.json"
ENGINE_FLAGS=(-DGGML_NATIVE=ON)
if [[ -f "$MARKER" ]]; then
    mapfile -t ENGINE_FLAGS < <("$PYTHON" - "$MARKER" <<'PY'
import json
import sys

for arg in json.load(open(sys.argv[1]))["cmake_args"]:
    name = arg.split("=", 1)[0]
    if not (name.startswith("-DLLAMA_BUILD_") or name.endswith("_INCLUDE")):
        print(arg)
PY
)
fi
SHARED=OFF  # a portable build loads its CPU variants as libraries
for flag in "${ENGINE_FLAGS[@]}"; do
    [[ "$flag" == "-DGGML_BACKEND_DL=ON" ]] && SHARED=ON
done
FLAGS_FILE="$BUILD/gemserve-flags.txt"
WANTED="$(printf '%s\n' "${ENGINE_FLAGS[@]}" "-DBUILD_SHARED_LIBS=$SHARED")"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$BUILD"
elif [[ -x "$BIN" && -f "$FLAGS_FILE" && "$(cat "$FLAGS_FILE")" == "$WANTED" ]]; then
    echo "llama-server already built: $BIN"
    exit 0
elif [[ -d "$BUILD" ]]; then
    echo "llama-server was built with other CPU flags than the engine's; rebuilding"
    rm -rf "$BUILD"
fi

mkdir -p "$SRC_PARENT"
if [[ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]]; then
    echo "downloading the llama-cpp-python $VERSION sdist"
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
        --dest "$SRC_PARENT" "llama-cpp-python==$VERSION"
    tar -xzf "$SRC_PARENT/llama_cpp_python-$VERSION.tar.gz" -C "$SRC_PARENT"
fi

# The engine's CPU flags (above), OpenMP, static ggml (fine for a standalone binary), no TLS,
# no web UI download, nothing but the server.
cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS="$SHARED" \
    "${ENGINE_FLAGS[@]}" \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
    -DGGML_CCACHE=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
cmake --build "$BUILD" --config Release --target llama-server -j "$JOBS"

test -x "$BIN"
printf '%s\n' "$WANTED" > "$FLAGS_FILE"
echo "built: $BIN ($(printf '%s ' "${ENGINE_FLAGS[@]}"))"
"$BIN" --version 2>&1 | head -n 3 || true
