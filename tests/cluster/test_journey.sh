#!/usr/bin/env bash
# A user's journey with the CLI, as the README tells it: a 3-node cluster
# (deploy/local/cluster.sh, on a free range of ports), a topic, 100,000
# lines through `produce`, read back with `consume`, a node killed while
# producing goes on, everything read, a group that reads it all, its
# replay with `reset-offsets --to-earliest`, and `group describe` lag at
# 0 each time. An EXIT trap stops the cluster, also when a check fails.
# SLUICED_BIN and SLUICE_BIN come from meson.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/cluster/lib.sh
SH=deploy/local/cluster.sh
S=$SLUICE_BIN
dir=$(mktemp -d)

cleanup() {
	stop_cluster "$dir"
	rm -rf "$dir"
}
trap cleanup EXIT

base=$(free_base_port 3)
[ -n "$base" ] || { echo "FAIL: no free port range"; exit 1; }

if ! $SH up 3 --dir "$dir" --base-port "$base" >"$dir/up.log" 2>&1; then
	echo "FAIL: cluster up: $(tail -n 1 "$dir/up.log")"
	exit 1
fi
export SLUICE_BOOTSTRAP=127.0.0.1:$base,127.0.0.1:$((base + 100)),127.0.0.1:$((base + 200))

lines() { # from to: "k<i>:<i>" per line
	seq "$1" "$2" | awk '{print "k" $1 ":" $1}'
}
# The lag of every partition of the group, summed (describe --json).
lag() {
	$S group describe "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(o["lag"] for o in d["offsets"]) if all(o["lag"] >= 0 for o in d["offsets"]) else -1)'
}

check "topic create" $S topic create journey --partitions 6 --replication-factor 3
err=$(lines 1 100000 | $S produce journey --key-separator : 2>&1 >/dev/null)
check "100,000 lines produced" test "$err" = "produced 100000 records"
n=$($S consume journey --from-beginning --timeout-ms 3000 2>/dev/null | sort -un | wc -l)
check "consume reads them back, each once ($n)" test "$n" -eq 100000

$SH kill 1 --dir "$dir" >/dev/null
err=$(lines 100001 150000 | $S produce journey --key-separator : 2>&1 >/dev/null)
check "with node 1 killed, producing goes on ($err)" test "$err" = "produced 50000 records"
n=$($S consume journey --from-beginning --timeout-ms 3000 2>/dev/null | sort -un | wc -l)
check "everything is read with node 1 down ($n)" test "$n" -eq 150000
check "node 1 comes back" $SH start 1 --dir "$dir"

out=$($S consume journey --group j --from-beginning --timeout-ms 3000 2>&1 >"$dir/group.out")
check "a group reads it all ($out)" test "$(sort -un "$dir/group.out" | wc -l)" -eq 150000
check "its lag is 0" test "$(lag j)" -eq 0
plan=$($S group reset-offsets j --topic journey --to-earliest 2>/dev/null)
check "the plan of a replay: 6 partitions back to 0" test "$(grep -c "^j	journey	[0-5]	[0-9]*	0$" <<<"$plan")" -eq 6
check "the plan changed nothing" test "$(lag j)" -eq 0
check "the replay" $S group reset-offsets j --topic journey --to-earliest --execute
# Offsets count Raft's own entries too: at least the records are to read.
check "the lag is back (150,000 records to read)" test "$(lag j)" -ge 150000
$S consume journey --group j --timeout-ms 3000 >"$dir/replay.out" 2>/dev/null
check "the replay reads everything again" test "$(sort -un "$dir/replay.out" | wc -l)" -eq 150000
check "and the lag is 0 again" test "$(lag j)" -eq 0

if [ $fails -gt 0 ]; then
	echo "$fails checks failed; node logs:"
	tail -n 20 "$dir"/node*.log
	exit 1
fi
echo "all checks passed"
