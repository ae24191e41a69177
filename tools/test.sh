#!/bin/sh
# tools/test.sh: set up, build and run every snapfs test.
#
# Two builds are tested: the normal one (build/) and one under AddressSanitizer
# and UndefinedBehaviorSanitizer with leak checking (build-asan/); a third,
# built with clang (build-fuzz/), runs each libFuzzer target for a short
# while on its seed corpus (suite fuzz).  Tests that
# need /dev/kvm exit 77 (skip) where it is missing; we then run exactly those
# suites again inside tests/vm/run-in-vm, a QEMU VM that has KVM, so that in
# the end nothing real is skipped.  A skip that survives is a failure.
# A fourth build under ThreadSanitizer (build-tsan/) runs the store and
# filesystem suites (unit, fuse), where the daemon's threads meet; its KVM
# suite is left out, since the VM harness would run it at a crawl.
#
# Each run keeps its own log: BUILD/meson-logs/native.txt for the tests on
# this machine, vm.txt for those in the VM (and .json beside them).
#
# usage: tools/test.sh [--vm] [--no-asan] [--no-tsan] [MESON-TEST-ARGS...]
#   --vm       run the KVM suite in the VM even where /dev/kvm exists here
#   --no-asan  only the normal build, no fuzzing (quicker while developing)
#   --no-tsan  no ThreadSanitizer build
set -eu
cd "$(dirname "$0")/.."

force_vm=0 asan=1 tsan=1
while [ $# -gt 0 ]; do
	case $1 in
	--vm) force_vm=1; shift ;;
	--no-asan) asan=0; shift ;;
	--no-tsan) tsan=0; shift ;;
	*) break ;;
	esac
done

need_vm=0
if [ "$force_vm" = 1 ] || ! tools/kvm-usable; then need_vm=1; fi
if [ "$need_vm" = 1 ]; then tools/setup.sh --vm; else tools/setup.sh; fi

builds="build"
[ "$asan" = 1 ] && builds="build build-asan"

for b in $builds; do
	if [ ! -f "$b/build.ninja" ]; then
		if [ "$b" = build-asan ]; then
			meson setup "$b" -Db_sanitize=address,undefined -Db_lundef=false
		else
			meson setup "$b"
		fi
	fi
	meson compile -C "$b"
done

# LeakSanitizer is part of ASan; fail on any report, and make UBSan fatal.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export MALLOC_PERTURB_=0

status=0 ran=
for b in $builds; do
	echo "== $b: tests on this machine"
	if [ "$need_vm" = 1 ]; then
		SNAPFS_NO_KVM=1 meson test -C "$b" --no-rebuild --print-errorlogs --logbase native \
			"$@" || status=1
	else
		meson test -C "$b" --no-rebuild --print-errorlogs --logbase native "$@" || status=1
	fi
	tools/test-report "$b" native "$need_vm" || status=1
	ran="$ran $b:native"
done
if [ "$need_vm" = 1 ]; then
	# One VM per build, all at once: each has one vCPU (two froze now and
	# then), which keeps one host core busy, so two builds fill two cores.
	# Each VM's output is shown when all are done, one after the other.
	echo "== KVM tests inside the QEMU VM harness, one VM per build at once:$builds"
	for b in $builds; do
		rm -f "$b/meson-logs/vm.json"	# no stale failures if the VM cannot start
		(tests/vm/run-in-vm --mem 3072 --cpus 1 -- meson test -C "$b" --no-rebuild \
			--print-errorlogs --logbase vm --suite kvm --timeout-multiplier 10 "$@" \
			>"$b/meson-logs/vm-run.out" 2>&1
		echo $? >"$b/meson-logs/vm-run.status") &
	done
	wait
	for b in $builds; do
		echo "== $b: KVM tests inside the QEMU VM harness"
		cat "$b/meson-logs/vm-run.out"
		[ "$(cat "$b/meson-logs/vm-run.status")" = 0 ] || status=1
		tools/test-report "$b" vm 0 || status=1
		ran="$ran $b:vm"
	done
fi
if [ "$tsan" = 1 ]; then
	echo "== build-tsan: store and filesystem tests under ThreadSanitizer"
	[ -f build-tsan/build.ninja ] || meson setup build-tsan -Db_sanitize=thread -Db_lundef=false
	meson compile -C build-tsan
	# A crash test's child ends without closing its store on purpose:
	# its running threads are no leak.  Any race report fails the test.
	TSAN_OPTIONS=report_thread_leaks=0:halt_on_error=1:second_deadlock_stack=1 \
		meson test -C build-tsan --no-rebuild --print-errorlogs --logbase native --suite unit \
		--suite fuse --timeout-multiplier 3 "$@" || status=1
	tools/test-report build-tsan native 0 || status=1
	ran="$ran build-tsan:native"
fi
if [ "$asan" = 1 ]; then
	echo "== build-fuzz: libFuzzer runs of the ELF loader and snapshot parsers"
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzzers=true
	meson compile -C build-fuzz fuzz-elf fuzz-manifest fuzz-cpustate
	meson test -C build-fuzz --no-rebuild --print-errorlogs --logbase native --suite fuzz || status=1
	tools/test-report build-fuzz native 0 || status=1
	ran="$ran build-fuzz:native"
fi

if [ "$status" = 0 ]; then
	echo "== all tests passed"
else
	# The failures again, each with the checks that failed: the output
	# above is long, and its end is what gets read.
	echo "== failed tests"
	for r in $ran; do tools/test-report --failures "${r%:*}" "${r#*:}"; done
	echo "== FAILED"
fi
exit "$status"
