#!/usr/bin/env bash
# A local Sluice cluster on 127.0.0.1 (deploy/README.md; the contract is
# shared/DESIGN.md's "tools/ and deploy/local").
#
#   deploy/local/cluster.sh up|down|status|kill N|start N [--nodes N] [--dir DIR] [--base-port P]
#
# Node i (1-based) listens on client P+100*(i-1), peer P+1+100*(i-1), http
# P+552+100*(i-1); P defaults to 9092, DIR to ./data/local, the node count
# to 3. Node i keeps its data in DIR/nodeI, its log in DIR/nodeI.log and
# its pid in DIR/nodeI.pid; DIR/cluster.env remembers the node count and
# base port, so that later commands act on the running cluster.
# SLUICED_BIN names the sluiced binary (default build/broker/sluiced);
# when set, nothing is installed or built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
READY_TIMEOUT=60
STOP_TIMEOUT=30

die() { # the reason goes on the last line
	echo "cluster.sh: $*" >&2
	exit 1
}

usage() {
	cat >&2 <<'EOF'
usage: deploy/local/cluster.sh SUBCOMMAND [N] [--nodes N] [--dir DIR] [--base-port P]
  up        install what is missing, build if needed, start N nodes (default 3),
            return once every node is ready
  down      stop every node (SIGTERM), return once their ports are free
  status    one line per node: id, pid or down, ports, ready or not
  kill N    SIGKILL node N
  start N   start node N again, return once it is ready
EOF
	exit 2
}

cmd=""
arg=""
nodes=""
dir=""
base=""
while [ $# -gt 0 ]; do
	case "$1" in
	--nodes) [ $# -ge 2 ] || usage; nodes=$2; shift 2 ;;
	--nodes=*) nodes=${1#*=}; shift ;;
	--dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
	--dir=*) dir=${1#*=}; shift ;;
	--base-port) [ $# -ge 2 ] || usage; base=$2; shift 2 ;;
	--base-port=*) base=${1#*=}; shift ;;
	-h | --help) usage ;;
	-*) echo "cluster.sh: unknown flag $1" >&2; usage ;;
	*)
		if [ -z "$cmd" ]; then cmd=$1
		elif [ -z "$arg" ]; then arg=$1
		else echo "cluster.sh: unexpected '$1'" >&2; usage
		fi
		shift ;;
	esac
done
case "$cmd" in
up | down | status | kill | start) ;;
"") usage ;;
*) echo "cluster.sh: unknown subcommand '$cmd'" >&2; usage ;;
esac
isnum() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

dir=${dir:-./data/local}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
envfile=$dir/cluster.env
if [ "$cmd" != up ] && [ -f "$envfile" ]; then
	# shellcheck disable=SC1090
	. "$envfile"
	nodes=${nodes:-$NODES}
	base=${base:-$BASE_PORT}
fi
if [ "$cmd" = up ] && [ -n "$arg" ] && [ -z "$nodes" ]; then
	nodes=$arg
	arg=""
fi
nodes=${nodes:-3}
base=${base:-9092}
isnum "$nodes" 1 99 || { echo "cluster.sh: --nodes must be 1..99" >&2; usage; }
isnum "$base" 1 65535 || { echo "cluster.sh: --base-port must be a port" >&2; usage; }
[ $((base + 552 + 100 * (nodes - 1))) -le 65535 ] || die "ports above 65535 with $nodes nodes from $base"
case "$cmd" in
kill | start) isnum "${arg:-x}" 1 "$nodes" || { echo "cluster.sh: $cmd needs a node number 1..$nodes" >&2; usage; } ;;
*) [ -z "$arg" ] || { echo "cluster.sh: unexpected '$arg'" >&2; usage; } ;;
esac

client_port() { echo $((base + 100 * ($1 - 1))); }
peer_port() { echo $((base + 1 + 100 * ($1 - 1))); }
http_port() { echo $((base + 552 + 100 * ($1 - 1))); }
pidfile() { echo "$dir/node$1.pid"; }

# Whether pid runs (a zombie does not: nobody may reap it here).
alive() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# The node's pid while it runs, else nothing.
running_pid() {
	local f pid
	f=$(pidfile "$1")
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && alive "$pid" && grep -q sluiced "/proc/$pid/cmdline" 2>/dev/null; then
		echo "$pid"
	fi
}

port_open() { # something listens on 127.0.0.1:$1
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# GET http://127.0.0.1:$1$2: "STATUS BODY" on one line, or nothing.
http_get() {
	{ timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3 && cat <&3' \
		"$1" "$2" 2>/dev/null || true; } | tr -d '\r' |
		awk 'NR == 1 { status = $2; next } !inbody && $0 == "" { inbody = 1; next }
		     inbody { body = body $0 " " } END { if (status != "") print status " " body }'
}

ready() { [[ "$(http_get "$(http_port "$1")" /readyz)" == 200* ]]; }

seeds() {
	local i s=""
	for i in $(seq 1 "$nodes"); do s="$s${s:+,}$i@127.0.0.1:$(peer_port "$i")"; done
	echo "$s"
}

bootstrap() {
	local i s=""
	for i in $(seq 1 "$nodes"); do s="$s${s:+,}127.0.0.1:$(client_port "$i")"; done
	echo "$s"
}

sluiced_bin() {
	echo "${SLUICED_BIN:-$ROOT/build/broker/sluiced}"
}

start_node() {
	local i=$1 bin
	bin=$(sluiced_bin)
	local p
	for p in "$(client_port "$i")" "$(peer_port "$i")" "$(http_port "$i")"; do
		port_open "$p" && die "port $p (node $i) is in use"
	done
	mkdir -p "$dir/node$i"
	# A clean environment: only what the node needs.
	setsid env -i PATH=/usr/bin:/bin \
		SLUICED_NODE_ID="$i" SLUICED_DATA_DIR="$dir/node$i" SLUICED_SEEDS="$(seeds)" \
		SLUICED_LISTEN_HOST=127.0.0.1 SLUICED_CLIENT_PORT="$(client_port "$i")" \
		SLUICED_PEER_PORT="$(peer_port "$i")" SLUICED_HTTP_PORT="$(http_port "$i")" \
		"$bin" </dev/null >>"$dir/node$i.log" 2>&1 &
	echo $! >"$(pidfile "$i")"
}

# Waits until node i answers /readyz 200; dies with the reason otherwise.
wait_ready() {
	local i=$1 deadline=$((SECONDS + READY_TIMEOUT)) pid
	while ! ready "$i"; do
		# The process start_node launched, whatever it has exec'd into
		# yet (setsid, env, then sluiced): a check right after the fork
		# would not find "sluiced" in its command line.
		pid=$(cat "$(pidfile "$i")" 2>/dev/null) || pid=
		if [ -z "$pid" ] || ! alive "$pid"; then
			tail -n 5 "$dir/node$i.log" >&2 || true
			die "node $i exited during start-up; see $dir/node$i.log"
		fi
		if [ $SECONDS -ge $deadline ]; then
			die "node $i not ready after $READY_TIMEOUT s: $(http_get "$(http_port "$i")" /readyz); see $dir/node$i.log"
		fi
		sleep 0.2
	done
}

build_if_needed() {
	[ -z "${SLUICED_BIN:-}" ] || { [ -x "$SLUICED_BIN" ] || die "SLUICED_BIN=$SLUICED_BIN is not executable"; return 0; }
	bash "$ROOT/deploy/install-deps.sh"
	if [ ! -f "$ROOT/build/build.ninja" ]; then
		meson setup "$ROOT/build" >/dev/null || die "meson setup failed"
	fi
	ninja -C "$ROOT/build" >/dev/null || die "the build failed (ninja -C build)"
}

case "$cmd" in
up)
	for i in $(seq 1 "$nodes"); do
		[ -z "$(running_pid "$i")" ] || die "node $i already runs (pid $(running_pid "$i")) in $dir: cluster.sh down first"
	done
	build_if_needed
	printf 'NODES=%s\nBASE_PORT=%s\n' "$nodes" "$base" >"$envfile"
	for i in $(seq 1 "$nodes"); do start_node "$i"; done
	for i in $(seq 1 "$nodes"); do wait_ready "$i"; done
	boot=$(bootstrap)
	cat <<EOF
$nodes nodes ready; logs and data in $dir
bootstrap: $boot
try:
  export SLUICE_BOOTSTRAP=$boot
  build/tools/sluice topic create demo --partitions 3 --replication-factor $((nodes < 3 ? nodes : 3))
  build/tools/sluice topic describe demo
  seq 1 1000 | build/tools/sluice produce demo
  build/tools/sluice consume demo --from-beginning --max-messages 1000 --print-offset
  build/tools/sluice perf produce --topic demo --num-records 1000000 --record-size 100
  build/tools/sluice cluster status
  deploy/local/cluster.sh down --dir $dir
EOF
	;;
down)
	pids=()
	for i in $(seq 1 "$nodes"); do
		pid=$(running_pid "$i")
		if [ -n "$pid" ]; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	for pid in "${pids[@]}"; do
		killed=0
		while alive "$pid"; do
			if [ $SECONDS -ge $deadline ] && [ $killed = 0 ]; then
				echo "cluster.sh: pid $pid did not stop within $STOP_TIMEOUT s: SIGKILL" >&2
				kill -KILL "$pid" 2>/dev/null || true
				killed=1
			fi
			sleep 0.1
		done
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	for i in $(seq 1 "$nodes"); do
		rm -f "$(pidfile "$i")"
		for p in "$(client_port "$i")" "$(peer_port "$i")" "$(http_port "$i")"; do
			while port_open "$p"; do
				[ $SECONDS -lt $deadline ] || die "port $p is still in use"
				sleep 0.1
			done
		done
	done
	echo "stopped ${#pids[@]} nodes"
	;;
status)
	for i in $(seq 1 "$nodes"); do
		pid=$(running_pid "$i")
		state="down"
		if [ -n "$pid" ]; then
			if ready "$i"; then state="ready"; else state="not-ready"; fi
		fi
		echo "node $i pid ${pid:--} client $(client_port "$i") peer $(peer_port "$i") http $(http_port "$i") $state"
	done
	;;
kill)
	pid=$(running_pid "$arg")
	[ -n "$pid" ] || die "node $arg is not running"
	kill -KILL "$pid"
	while alive "$pid"; do sleep 0.05; done
	echo "killed node $arg (pid $pid)"
	;;
start)
	[ -z "$(running_pid "$arg")" ] || die "node $arg already runs (pid $(running_pid "$arg"))"
	[ -x "$(sluiced_bin)" ] || die "$(sluiced_bin) is missing: run cluster.sh up first"
	start_node "$arg"
	wait_ready "$arg"
	echo "node $arg ready (pid $(running_pid "$arg"))"
	;;
esac
