# Shared by scripts/run, scripts/test and scripts/bench (sourced, not run): installs what is
# missing on a Debian 12 machine and configures + builds Unfold in Release.
set -euo pipefail

UNFOLD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNFOLD_BUILD="${UNFOLD_BUILD:-$UNFOLD_ROOT/build}"

# Debian 12 packages the build and the tests need (oneDNN for the GEMMs it runs faster than
# OpenBLAS, Note [GEMM backends]; OpenMPI for data-parallel training, Note [Data parallelism]),
# gnuplot for `unfold plot`, and the text of the
# language-model recipe: jargon-text's Jargon File (1.6 million characters of English prose, UTF-8,
# public domain, 650 kB), unpacked by unfold_jargon_text.
UNFOLD_PACKAGES=(
    g++ make cmake ccache pkg-config
    libxtensor-dev libxsimd-dev libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin
    libboost-test-dev libfmt-dev libcli11-dev nlohmann-json3-dev
    gnuplot-nox jargon-text
)
UNFOLD_JARGON_GZ=/usr/share/doc/jargon-text/jargon.txt.gz

# What the notebooks need besides the build (scripts/notebooks): the Jupyter kernel over
# clang-repl-16 (run by /usr/bin/python3), jupyter-notebook to open them, gnuplot for their plots.
UNFOLD_NOTEBOOK_PACKAGES=(
    clang-16 clang-tools-16 python3 python3-ipykernel python3-jupyter-client jupyter-notebook
    gnuplot-nox
)

# What the test suite needs besides the build (scripts/test): the notebooks' packages, nbconvert
# to execute them, doxygen for the API reference, clang-format for the format check.
UNFOLD_TEST_PACKAGES=(
    "${UNFOLD_NOTEBOOK_PACKAGES[@]}" jupyter-nbconvert python3-nbformat doxygen clang-format
)

# The sanitizer build (scripts/test): clang-14 with AddressSanitizer + UndefinedBehaviorSanitizer,
# whose runtime (and libFuzzer's, for tests/fuzz) is libclang-rt-14-dev.
UNFOLD_SANITIZE_PACKAGES=(clang-14 libclang-rt-14-dev)
UNFOLD_SANITIZE_BUILD="${UNFOLD_SANITIZE_BUILD:-$UNFOLD_ROOT/build-sanitize}"

unfold_install() {
    local missing=()
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "unfold: installing ${missing[*]}" >&2
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Writes the Jargon File as plain UTF-8 to $1 (the package ships it gzipped).
unfold_jargon_text() {
    if [ ! -f "$UNFOLD_JARGON_GZ" ]; then
        echo "unfold: $UNFOLD_JARGON_GZ is missing: reinstall jargon-text (and allow /usr/share/doc in dpkg's path-exclude)" >&2
        return 1
    fi
    [ -s "$1" ] || gzip -dc "$UNFOLD_JARGON_GZ" > "$1"
}

unfold_build() {
    unfold_install "${UNFOLD_PACKAGES[@]}"
    local jobs
    jobs="$(nproc 2>/dev/null || echo 2)"
    cmake -S "$UNFOLD_ROOT" -B "$UNFOLD_BUILD" -DCMAKE_BUILD_TYPE=Release "$@"
    cmake --build "$UNFOLD_BUILD" -j "$jobs"
}

# Configures and builds the test programs, the unfold command and the fuzz targets with clang-14,
# -O1 and ASan + UBSan (every UB report is fatal) in $UNFOLD_SANITIZE_BUILD; no benchmarks.
unfold_sanitize_build() {
    unfold_install "${UNFOLD_SANITIZE_PACKAGES[@]}"
    local jobs sanitize="-fsanitize=address,undefined"
    jobs="$(nproc 2>/dev/null || echo 2)"
    cmake -S "$UNFOLD_ROOT" -B "$UNFOLD_SANITIZE_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
        -DCMAKE_CXX_FLAGS="$sanitize -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
        -DCMAKE_EXE_LINKER_FLAGS="$sanitize" -DUNFOLD_BUILD_TESTS=ON -DUNFOLD_BUILD_BENCH=OFF "$@"
    cmake --build "$UNFOLD_SANITIZE_BUILD" -j "$jobs" \
        --target unfold_tests unfold_tests_f64 unfold unfold_fuzz
}
