#!/usr/bin/env bash
# deploy/local/cluster.sh as users run it: up, status, kill, start, down,
# and its refusals. SLUICED_BIN names the sluiced to run (meson sets it);
# the cluster lives in a temp directory on a free range of ports, and an
# EXIT trap stops whatever it started, also when a check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/cluster/lib.sh
SH=deploy/local/cluster.sh
dir=$(mktemp -d)

cleanup() {
	stop_cluster "$dir"
	rm -rf "$dir"
}
trap cleanup EXIT

base=$(free_base_port 3)
[ -n "$base" ] || { echo "FAIL: no free port range"; exit 1; }

out=$($SH up --nodes 3 --dir "$dir" --base-port "$base" 2>&1)
check "up returns 0 once ready" test $? -eq 0
check "up prints the bootstrap list" grep -q "bootstrap: 127.0.0.1:$base,127.0.0.1:$((base + 100)),127.0.0.1:$((base + 200))" <<<"$out"
status=$($SH status --dir "$dir")
check "status: three nodes ready" test "$(grep -c ' ready$' <<<"$status")" -eq 3
check "status: node 2's ports" grep -q "^node 2 pid [0-9]* client $((base + 100)) peer $((base + 101)) http $((base + 652)) ready$" <<<"$status"
err=$($SH up --dir "$dir" --base-port "$base" 2>&1)
check "a second up refuses" test $? -ne 0
check "and says why on its last line" grep -q "already runs" <<<"$(tail -n 1 <<<"$err")"
$SH kill 2 --dir "$dir" >/dev/null
check "kill 2: node 2 down" grep -q "^node 2 pid - .* down$" <<<"$($SH status --dir "$dir")"
$SH start 2 --dir "$dir" >/dev/null
check "start 2 returns with node 2 ready" grep -q "^node 2 pid [0-9]* .* ready$" <<<"$($SH status --dir "$dir")"
$SH bogus >/dev/null 2>&1
check "an unknown subcommand exits 2" test $? -eq 2
$SH kill 9 --dir "$dir" >/dev/null 2>&1
check "kill of a node that does not exist exits 2" test $? -eq 2
$SH down --dir "$dir" >/dev/null
check "down returns 0" test $? -eq 0
busy=0
for i in 0 1 2; do
	for off in 0 1 552; do port_free $((base + off + 100 * i)) || busy=1; done
done
check "down freed every port" test $busy -eq 0
check "status: all down" test "$($SH status --dir "$dir" | grep -c ' down$')" -eq 3

if [ $fails -gt 0 ]; then
	echo "$fails checks failed; node logs:"
	tail -n 20 "$dir"/node*.log
	exit 1
fi
echo "all checks passed"
