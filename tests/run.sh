#!/usr/bin/env bash
# Installs what is missing, builds and runs every test:
#   1. build/       gcc, warnings as errors: unit tests, then the chaos suite's
#                   short profile (tests/chaos)
#   2. build-asan/  gcc with AddressSanitizer + UndefinedBehaviorSanitizer: unit tests
#   3. build-noguards/  raft/ without its guards: each guard test must fail
#   4. build-fuzz/  clang (warnings as errors) with libFuzzer: each fuzzer ~30 s
# Ends with one summary line "N passed, N failed". Exit status 0 only if
# everything passed. FUZZ_SECONDS overrides the fuzzing time per target.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0
failures=()

# Counts Criterion's results from a meson test log.
count_criterion() {
	local log=$1 p f
	p=$(grep -ho 'Passing: [0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
	f=$(grep -ho 'Failing: [0-9]*\|Crashing: [0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
	passed=$((passed + p))
	failed=$((failed + f))
}

setup() { # dir, meson args...
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null
	else
		meson configure "$dir" "$@" >/dev/null
	fi
}

unit() { # dir, label
	local dir=$1 label=$2
	echo "== $label: build"
	ninja -C "$dir" >/dev/null
	echo "== $label: unit tests"
	local before=$failed ok=1
	if ! meson test -C "$dir" --suite unit --print-errorlogs; then
		failures+=("$label unit tests")
		ok=0
	fi
	grep -h 'Synthesis' "$dir/meson-logs/testlog.txt" || true
	count_criterion "$dir/meson-logs/testlog.txt"
	# A test that is not Criterion's (the shell and Python ones) fails
	# without a "Failing:" line: count it from meson's own summary.
	if [ $ok = 0 ] && [ "$failed" -eq "$before" ]; then
		local n
		n=$(grep '^result:' "$dir/meson-logs/testlog.txt" | grep -vc 'exit status 0$' || true)
		failed=$((failed + (n > 0 ? n : 1)))
	fi
}

setup build -Dwerror=true
unit build "gcc -Werror"

# The fault-injection suite's short profile (tests/chaos/README.md): a
# 3-node and a 5-node cluster under faults, each on a new seed (printed).
echo "== chaos: short profile"
if ! meson test -C build --suite chaos --print-errorlogs; then
	failures+=("chaos short profile")
fi
grep -h -A5 '^chaos summary' build/meson-logs/testlog.txt || true
n=$(grep -c '^chaos result: PASS' build/meson-logs/testlog.txt || true)
passed=$((passed + n))
failed=$((failed + 2 - (n < 2 ? n : 2)))

setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
# Criterion's own runner leaks a little at exit; its module is suppressed.
# Allocation stacks are cut to the allocating function (malloc_context_size
# =2) so that the suppression cannot also hide a test's leaks (every test
# runs below Criterion's frames). Criterion does not fail a test that
# leaks, so any leak report fails the run here. To debug an ASan report
# with full stacks, rerun the test without malloc_context_size.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:malloc_context_size=2 \
	LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
	unit build-asan "gcc ASan+UBSan"
if grep -q 'ERROR: LeakSanitizer' build-asan/meson-logs/testlog.txt; then
	grep -A8 'ERROR: LeakSanitizer' build-asan/meson-logs/testlog.txt | head -60
	failed=$((failed + 1))
	failures+=("memory leaks under LeakSanitizer")
else
	passed=$((passed + 1))
fi

# The guard tests prove themselves: built without the guards (raft/,
# -Dguards=false), every test named guard_* must fail.
echo "== raft guards off: every guard test must fail"
setup build-noguards -Dguards=false
ninja -C build-noguards tests/unit/raft/test_raft tests/sim/test_sim >/dev/null
for t in tests/unit/raft/test_raft tests/sim/test_sim; do
	out=$("build-noguards/$t" --filter '*/guard_*' --jobs 2 2>&1 || true)
	echo "$out" | grep -E '^\[FAIL\]|Synthesis' || true
	if echo "$out" | grep -q 'Synthesis: Tested: [1-9][0-9]* | Passing: 0 |'; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("a guard test of $(basename "$t") passed without its guard")
	fi
done

echo "== clang libFuzzer: build"
CC=clang setup build-fuzz -Dwerror=true -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-fuzz >/dev/null
for fz in build-fuzz/tests/fuzz/fuzz_*; do
	[ -f "$fz" ] && [ -x "$fz" ] || continue
	name=$(basename "$fz")
	corpus=tests/fuzz/corpus/${name#fuzz_}
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
	echo "== fuzz: $name for ${FUZZ_SECONDS}s"
	if "$fz" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$work" >"$work.log" 2>&1; then
		passed=$((passed + 1))
		grep -E 'stat::number_of_executed_units|Done' "$work.log" | tail -2 || true
	else
		failed=$((failed + 1))
		failures+=("$name")
		tail -40 "$work.log"
	fi
	rm -rf "$work" "$work.log"
done

echo
if [ "${#failures[@]}" -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "${#failures[@]}" -eq 0 ] && [ "$failed" -eq 0 ]
