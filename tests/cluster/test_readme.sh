#!/usr/bin/env bash
# README.md's C example, as a user builds it: meson install of this build
# into a temporary root, the program taken from the README (the block
# after "<!-- example: hello.c -->"), compiled with pkg-config against the
# installed sluice.pc, and run against a one-node cluster
# (deploy/local/cluster.sh on a free range of ports; an EXIT trap stops
# it). BUILD_DIR and SLUICED_BIN come from meson.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/cluster/lib.sh
SH=deploy/local/cluster.sh
dir=$(mktemp -d)

cleanup() {
	stop_cluster "$dir/cluster"
	rm -rf "$dir"
}
trap cleanup EXIT

meson install -C "$BUILD_DIR" --no-rebuild --quiet --destdir "$dir/root" >"$dir/install.log" 2>&1 \
	&& ok "meson install" || { fail "meson install: $(tail -n 3 "$dir/install.log")"; exit 1; }
pc=$(find "$dir/root" -name sluice.pc | head -n 1)
[ -n "$pc" ] && ok "sluice.pc installed" || { fail "no sluice.pc"; exit 1; }
for f in bin/sluiced bin/sluice include/sluice.h; do
	[ -e "$dir/root/usr/local/$f" ] && ok "installed $f" || fail "missing $f"
done

awk '/<!-- example: hello.c -->/ { on = 1; next }
     on && /^```c/ { body = 1; next }
     body && /^```/ { exit }
     body { print }' README.md >"$dir/hello.c"
[ -s "$dir/hello.c" ] && ok "the example is in the README" || { fail "no example in README.md"; exit 1; }
flags=$(PKG_CONFIG_SYSROOT_DIR="$dir/root" PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --cflags --libs sluice)
# A sanitized build's library needs the program built the same way.
san=$(meson introspect "$BUILD_DIR" --buildoptions |
	python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
[ "$san" = none ] || flags="$flags -fsanitize=$san"
if cc -Wall -Wextra -Werror "$dir/hello.c" $flags -o "$dir/hello" 2>"$dir/cc.log"; then
	ok "it compiles with pkg-config --cflags --libs sluice"
else
	fail "it does not compile: $(cat "$dir/cc.log")"
	exit 1
fi

base=$(free_base_port 1)
[ -n "$base" ] || { fail "no free port range"; exit 1; }
if ! $SH up 1 --dir "$dir/cluster" --base-port "$base" >"$dir/up.log" 2>&1; then
	fail "cluster up: $(tail -n 1 "$dir/up.log")"
	exit 1
fi
libdir=$(dirname "$(dirname "$pc")")
out=$(LD_LIBRARY_PATH="$libdir" timeout 120 "$dir/hello" "127.0.0.1:$base" 2>"$dir/hello.err")
rc=$?
[ $rc -eq 0 ] && ok "it runs and exits 0" || fail "exit $rc: $(cat "$dir/hello.err")"
n=$(grep -c '^partition [0-9]* offset [0-9]*: hello [0-9]$' <<<"$out")
[ "$n" -eq 10 ] && ok "it reads back its 10 records" || fail "it printed: $out"
# A second run reads only its own 10: the group committed the first ten.
out=$(LD_LIBRARY_PATH="$libdir" timeout 120 "$dir/hello" "127.0.0.1:$base" 2>"$dir/hello.err")
[ $? -eq 0 ] && [ "$(grep -c ': hello [0-9]$' <<<"$out")" -eq 10 ] \
	&& ok "a second run reads the next 10 from the group's commit" || fail "second run: $out $(cat "$dir/hello.err")"

if [ $fails -gt 0 ]; then
	echo "$fails checks failed"
	tail -n 20 "$dir"/cluster/node*.log 2>/dev/null
	exit 1
fi
echo "all checks passed"
