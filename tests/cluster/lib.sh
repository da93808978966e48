# What the shell cluster tests share (sourced): checks that count
# failures, and a free range of ports for deploy/local/cluster.sh.

fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # description, command...
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_base_port N: a base port whose N nodes' ports (client, peer, http
# at base + 100*(i-1) + 0, 1, 552) are all free, on stdout; empty when
# none was found. Below the kernel's ephemeral range: a port there with
# nothing listening can still be the source port of another test's
# connection, and the node's bind fails (seen: "peer listener ...:
# address already in use").
free_base_port() {
	local n=$1 eph top b free i off
	eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	top=$((eph - 1000))
	[ "$top" -gt 11000 ] || top=32768
	for _ in $(seq 1 50); do
		b=$((10000 + RANDOM % (top - 10000)))
		free=1
		for ((i = 0; i < n; i++)); do
			for off in 0 1 552; do port_free $((b + off + 100 * i)) || free=0; done
		done
		if [ $free = 1 ]; then
			echo "$b"
			return
		fi
	done
}

# stop_cluster DIR: cluster.sh down, then SIGKILL whatever is left (a
# node restarted outside the script, or one that would not stop).
stop_cluster() {
	deploy/local/cluster.sh down --dir "$1" >/dev/null 2>&1
	for f in "$1"/node*.pid; do
		[ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
	done
}
