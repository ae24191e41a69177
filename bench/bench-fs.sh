#!/bin/sh
# bench/bench-fs.sh: build snapfs and run the filesystem benchmark by hand.
# usage: bench/bench-fs.sh [BUILD-DIR] [bench-fs options, e.g. --size 256 --runs 3]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
[ $# -gt 0 ] && shift
[ -f "$build/build.ninja" ] || meson setup "$build"
meson compile -C "$build" fsd/snapfs bench/bench-fs
exec "$build/bench/bench-fs" --snapfs "$build/fsd/snapfs" "$@"
