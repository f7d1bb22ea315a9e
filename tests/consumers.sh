#!/usr/bin/env bash
# Unfold used as a library, the ways a user's project uses it; each mode is one CTest test
# (tests/CMakeLists.txt) and fails on any step that fails or on output that is not what it says:
#   install BUILD PREFIX           cmake --install BUILD into an emptied PREFIX (component dev)
#   find_package PREFIX WORK       examples/ with find_package(Unfold) against PREFIX, run
#   pkg_config PREFIX WORK         one example file compiled with $(pkg-config --cflags --libs unfold)
#   add_subdirectory SOURCE WORK   examples/ with Unfold's sources added by add_subdirectory
#   deb BUILD WORK                 cpack -G DEB in BUILD; checks the package's Depends, unpacks it
#                                  and builds examples/ against the unpacked /usr
set -euo pipefail
mode=$1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
examples="$here/examples"
launcher=() cxx=(g++)
if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache) cxx=(ccache g++)
fi

fail() { echo "consumers.sh $mode: $*" >&2; exit 1; }

# Runs the example programs in $1 and checks what they print.
run_examples() {
    local dir=$1 out
    out=$("$dir/check_softsign") || fail "check_softsign failed: $out"
    echo "$out"
    grep -q "^softsign: .* passed: true$" <<<"$out" || fail "the user's op did not pass check_op"
    grep -q "without the square: .* passed: false$" <<<"$out" || fail "check_op passed a wrong backward"
    run_training "$dir/train_mgu"
    run_text_model "$dir/text_mgu"
}

# Runs the character language model of a user's cell on README.md and checks that its held-out
# bits per character fell below 65% of the untrained model's (which is about log2 of the symbols).
run_text_model() {
    local out line first last
    out=$("$1" "$here/README.md") || fail "$1 failed: $out"
    echo "$out"
    line=$(grep "^held-out bits per character fell from" <<<"$out") || fail "no final score line"
    first=$(awk '{print $7}' <<<"$line")
    last=$(awk '{print $9}' <<<"$line")
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.65 * a) }' ||
        fail "held-out bits per character fell only from $first to $last"
}

# Runs a training program and checks that its loss fell to below half of where it started.
run_training() {
    local out
    out=$("$1") || fail "$1 failed: $out"
    echo "$out"
    local line first last
    line=$(grep "^loss fell from" <<<"$out") || fail "no final loss line"
    first=$(awk '{print $4}' <<<"$line")
    last=$(awk '{print $6}' <<<"$line" | tr -d ';')
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }' ||
        fail "the loss did not halve: $first -> $last"
}

build_examples() {
    local work=$1
    shift
    rm -rf "$work"
    mkdir -p "$(dirname "$work")" # its log goes beside it, before anything else made the folder
    cmake -S "$examples" -B "$work" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >"$work.log" 2>&1 ||
        { cat "$work.log"; fail "configuring examples/ failed"; }
    cmake --build "$work" -j 2 >>"$work.log" 2>&1 || { cat "$work.log"; fail "building examples/ failed"; }
}

case $mode in
install)
    build=$2 prefix=$3
    rm -rf "$prefix"
    cmake --install "$build" --prefix "$prefix" --component dev
    [ -f "$prefix/include/unfold/unfold.hpp" ] || fail "no include/unfold/unfold.hpp in $prefix"
    [ -f "$prefix/include/unfold/models/lstm.hpp" ] || fail "no include/unfold/models/lstm.hpp"
    [ ! -e "$prefix/include/ops" ] || fail "a top-level include/ops/ was installed"
    ;;
find_package)
    prefix=$2 work=$3
    build_examples "$work" -DCMAKE_PREFIX_PATH="$prefix"
    run_examples "$work"
    ;;
pkg_config)
    prefix=$2 work=$3
    rm -rf "$work" && mkdir -p "$work"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    flags=$(pkg-config --cflags --libs unfold) || fail "pkg-config does not find unfold"
    version=$(pkg-config --modversion unfold)
    echo "pkg-config unfold $version: $flags"
    # shellcheck disable=SC2086
    "${cxx[@]}" -std=c++17 -O2 -I"$examples" "$examples/train_mgu.cpp" -o "$work/train_mgu" $flags
    run_training "$work/train_mgu"
    ;;
add_subdirectory)
    source=$2 work=$3
    build_examples "$work" -DUNFOLD_SOURCE_DIR="$source"
    [ ! -e "$work/unfold/tests" ] || fail "add_subdirectory configured Unfold's own tests"
    run_examples "$work"
    ;;
deb)
    build=$2 work=$3
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" >cpack.log 2>&1) ||
        { cat "$work/cpack.log"; fail "cpack failed"; }
    deb=$(ls "$work"/unfold-dev_*_*.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || fail "cpack made no unfold-dev_<version>_<arch>.deb: $(ls "$work")"
    dpkg-deb --info "$deb"
    depends=$(dpkg-deb --field "$deb" Depends)
    for package in libxtensor-dev libxsimd-dev libopenblas-dev libfmt-dev nlohmann-json3-dev; do
        grep -q "$package" <<<"$depends" || fail "Depends of $(basename "$deb") lacks $package: $depends"
    done
    dpkg-deb -x "$deb" "$work/root"
    [ -f "$work/root/usr/include/unfold/unfold.hpp" ] || fail "the package has no /usr/include/unfold/unfold.hpp"
    build_examples "$work/examples" -DCMAKE_PREFIX_PATH="$work/root/usr"
    run_examples "$work/examples"
    ;;
*)
    fail "unknown mode"
    ;;
esac
