#!/bin/sh
# tests/fuzz/run-fuzz.sh: run one libFuzzer target for a short time.
#
# usage: run-fuzz.sh FUZZER SEED-CORPUS-DIR SECONDS [DICTIONARY]
#
# The seeds are copied to a temporary directory so that what the fuzzer
# adds to its corpus does not land in the source tree.  A crash, leak,
# timeout or broken invariant fails the run; the input that caused it is
# kept as ./fuzz-crash-NAME-* in the working directory (the build
# directory under meson) and can be replayed with the matching
# fuzz-replay-NAME program or the fuzzer itself.
set -eu
fuzzer=$1 seeds=$2 secs=$3 dict=${4:-}
name=$(basename "$fuzzer")
work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp "$seeds"/* "$work"/
# A finding exits 1, which meson counts as a failure (libFuzzer's own
# code, 77, would read as a skipped test).
set -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
	-error_exitcode=1 -timeout_exitcode=1 \
	-print_final_stats=1 -artifact_prefix="$PWD/fuzz-crash-$name-"
[ -n "$dict" ] && set -- "$@" -dict="$dict"
echo "$name: ${secs}s from $(ls "$work" | wc -l) seeds"
"$fuzzer" "$@" "$work"
