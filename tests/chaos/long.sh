#!/usr/bin/env bash
# The fault-injection suite's long profile (README.md here): runs of
# tests/chaos/chaos, one after another, each on a new seed, alternating
# 3- and 5-node clusters, until the time is up; then the totals: faults
# injected by kind, records acknowledged, lost and duplicated.
#
#   tests/chaos/long.sh [--minutes 30] [--run-seconds 240] [--build build]
#                       [--dir DIR] [--first-seed N] [-- CHAOS_ARGS...]
#
# CHAOS_ARGS go to every run (e.g. --full-disk, as root). Every run's
# output is kept in DIR (default: a new directory under TMPDIR), and a
# failed run's data and logs too. Exit status 0 only if every run passed.
set -euo pipefail
cd "$(dirname "$0")/../.."

minutes=30
run_seconds=240
build=build
dir=
seed=$(( $(date +%s) % 1000000 * 1000 ))
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=$2; shift 2 ;;
	--run-seconds) run_seconds=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--first-seed) seed=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "long.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/chaos-long-XXXXXX")
mkdir -p "$dir"
ninja -C "$build" broker/sluiced tests/chaos/chaos >/dev/null

end=$(( $(date +%s) + minutes * 60 ))
runs=0
failed=0
nodes=3
while [ "$(date +%s)" -lt "$end" ]; do
	left=$(( end - $(date +%s) ))
	secs=$(( left < run_seconds + 30 ? (left > 60 ? left - 30 : 30) : run_seconds ))
	out=$dir/run-$runs-seed-$seed.out
	echo "== run $runs: seed $seed, $nodes nodes, ${secs} s of faults"
	if "$build/tests/chaos/chaos" --sluiced "$build/broker/sluiced" --nodes "$nodes" \
		--seconds "$secs" --seed "$seed" --dir "$dir/run-$runs" "$@" >"$out" 2>&1; then
		rm -rf "$dir/run-$runs"
	else
		failed=$((failed + 1))
		echo "   FAILED: see $out"
	fi
	grep -A5 '^chaos summary' "$out" | sed 's/^/   /' || tail -5 "$out"
	runs=$((runs + 1))
	seed=$((seed + 1))
	nodes=$(( nodes == 3 ? 5 : 3 ))
done

echo
echo "== long profile: $runs runs in $minutes min, $failed failed (outputs in $dir)"
cat "$dir"/run-*.out | awk '
	/^chaos summary:/ {
		for (i = 1; i <= NF; i++)
			if ($i ~ /^faults=/) {
				n = split(substr($i, 8), kv, ",")
				for (k = 1; k <= n; k++) {
					split(kv[k], p, "=")
					faults[p[1]] += p[2]
					total += p[2]
				}
			}
	}
	/^  records:/ {
		for (i = 2; i <= NF; i++) {
			split($i, p, "=")
			rec[p[1]] += p[2]
		}
	}
	END {
		printf "faults injected: %d (", total
		sep = ""
		for (f in faults) { printf "%s%s %d", sep, f, faults[f]; sep = ", " }
		printf ")\n"
		printf "records acknowledged: %d, lost: %d, duplicates: %d, never sent: %d, out of order: %d, failed (not acknowledged): %d\n",
			rec["acked"], rec["lost"], rec["duplicates"], rec["never-sent"],
			rec["out-of-order"], rec["failed"]
	}'
[ "$failed" -eq 0 ]
