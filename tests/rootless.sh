#!/usr/bin/env bash
# The core namespace / rootfs / user-namespace checks of chapters 1-3, run as a NORMAL user: "works
# first time as a normal user" is a promise, so it is tested. tests/all.sh runs it as the
# unprivileged user minictr-test (see the rootless block there); run it yourself as any user:
#
#   tests/rootless.sh MINICTR_BINARY ROOTFS_OWNED_BY_YOU
#
# Prints one PASS/FAIL/SKIP line per check and a summary; exits non-zero if any check failed.
# SKIP is for stages a normal user cannot have on this machine (cgroup limits, veth networking).
set -u
M=${1:?usage: $0 MINICTR ROOTFS}
R=${2:?usage: $0 MINICTR ROOTFS}
me=$(id -u)
[ "$me" != 0 ] || { echo "rootless.sh: run me as a normal user, not root" >&2; exit 2; }
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "PASS  $1"; }
bad() { fail=$((fail + 1)); echo "FAIL  $1"; shift; for l in "$@"; do printf '        %s\n' "$l"; done; }
skipped() { skip=$((skip + 1)); echo "SKIP  $1 ($2)"; }
# eq NAME EXPECTED ACTUAL
eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected: $(printf %q "$2")" "got:      $(printf %q "$3")"; fi; }
run() { "$M" run "$@" </dev/null; }

if [ -n "${XDG_RUNTIME_DIR:-}" ]; then base=$XDG_RUNTIME_DIR/minictr; else base=${TMPDIR:-/tmp}/minictr-$me; fi
state_of() { grep -l "\"hostname\": \"$1\"" "$base"/*/state.json 2>/dev/null | head -1; }
pid_of() { # the container's host pid, from state.json (waits up to 10 s)
  local i f
  for i in $(seq 200); do
    f=$(state_of "$1")
    if [ -n "$f" ] && grep -q '"container_pid": [0-9]' "$f"; then
      sed -n 's/.*"container_pid": \([0-9]*\).*/\1/p' "$f"; return
    fi
    sleep 0.05
  done
}
sub_start=$(awk -F: -v u="$(id -un)" -v id="$me" '($1 == u || $1 == id) && $3 >= 65536 { print $2; exit }' /etc/subuid 2>/dev/null)
helpers=no; command -v newuidmap >/dev/null && command -v newgidmap >/dev/null && helpers=yes

echo "rootless checks as $(id -un) (uid $me), runtime dir $base, subuid start ${sub_start:-none}, newuidmap: $helpers"

# --- doctor: the preflight, as this user ------------------------------------------------------
doc=$("$M" doctor "$R" 2>&1); code=$?
eq "doctor: minictr run works for this user (exit 0)" 0 $code
case $doc in *panicked*) bad "doctor does not panic" "$doc" ;; *) ok "doctor does not panic" ;; esac
if [ -n "$sub_start" ] && [ "$helpers" = yes ]; then want='^OK   subordinate ids'; else want='^WARN subordinate ids.*(fix: '; fi
if echo "$doc" | grep -q "$want"; then ok "doctor: subordinate ids"; else bad "doctor: subordinate ids" "$doc"; fi

# --- chapter 1: namespaces, the first process, exit codes -------------------------------------
eq "pid 1" 1 "$(run "$R" sh -c 'echo $$')"
eq "ps shows only the container" "COMMAND sh ps" "$(run "$R" sh -c 'ps -o comm > /dev/shm/ps; cat /dev/shm/ps' | tr '\n' ' ' | sed 's/ *$//')"
for ns in cgroup ipc mnt net pid user uts; do
  inside=$(run "$R" readlink /proc/self/ns/$ns)
  host=$(readlink /proc/self/ns/$ns)
  if [ -n "$inside" ] && [ "$inside" != "$host" ]; then ok "own $ns namespace"; else bad "own $ns namespace" "inside=$inside host=$host"; fi
done
eq "--hostname" "box box" "$(run --hostname box "$R" sh -c 'echo $(hostname) $HOSTNAME')"
h=$(run "$R" hostname)
if echo "$h" | grep -qE '^[0-9a-f]{12}$'; then ok "default hostname is a 12-hex id"; else bad "default hostname is a 12-hex id" "$h"; fi
eq "host hostname unchanged" "$(cat /proc/sys/kernel/hostname)" "$(hostname)"
run "$R" true; eq "exit 0" 0 $?
run "$R" sh -c 'exit 42'; eq "exit 42" 42 $?
run "$R" /etc/passwd 2>/dev/null; eq "exit 126 (not executable)" 126 $?
err=$(run "$R" no-such-cmd 2>&1); code=$?
eq "exit 127 (not found)" 127 $code
case $err in *"no-such-cmd: command not found"*) ok "127 message";; *) bad "127 message" "$err";; esac

hn=rl-kill-$$
"$M" run --hostname $hn "$R" sh -c 'sleep 9139 & sleep 9139 & echo ready; wait' >/tmp/rootless-kill-$$ 2>&1 </dev/null &
mpid=$!
cpid=$(pid_of $hn)
if [ -z "$cpid" ]; then
  bad "kill pid 1 -> 137" "no state.json with a container_pid for $hn under $base"
  kill $mpid 2>/dev/null
else
  for i in $(seq 200); do grep -q ready /tmp/rootless-kill-$$ && break; sleep 0.05; done
  uid_line=$(awk '/^Uid:/ { print $2 }' /proc/$cpid/status)
  eq "host sees container root as uid $me" "$me" "$uid_line"
  kids=$(cat /proc/$cpid/task/$cpid/children)
  kill -9 "$cpid"
  wait $mpid; eq "kill pid 1 -> 137" 137 $?
  left=""
  for i in $(seq 200); do
    left=""; for k in $kids; do grep -q 9139 /proc/$k/cmdline 2>/dev/null && left="$left $k"; done
    [ -z "$left" ] && break; sleep 0.05
  done
  eq "all the container's processes died with pid 1" "" "$left"
fi
rm -f /tmp/rootless-kill-$$

out=$(mktemp)
"$M" run "$R" sh -c 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done' >"$out" </dev/null &
mpid=$!
for i in $(seq 200); do grep -q ready "$out" && break; sleep 0.05; done
kill -TERM $mpid; wait $mpid; code=$?
eq "SIGTERM reaches a trap" "3 got TERM" "$code $(tail -1 "$out")"
rm -f "$out"

eq "env defaults" "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /root" "$(run "$R" sh -c 'echo $PATH $HOME')"
eq "-e and -e KEY" "1 fromhost" "$(MINICTR_RL=fromhost run -e A=1 -e MINICTR_RL "$R" sh -c 'echo $A $MINICTR_RL')"
eq "args verbatim" "[-a][--b]" "$(run "$R" sh -c 'printf "[%s]" "$@"' sh -a --b)"

# --- chapter 2: the root filesystem -----------------------------------------------------------
points=$(run "$R" cut -d' ' -f5 /proc/self/mountinfo | grep -vE '^/$|^/(proc|sys|dev)(/|$)')
eq "no host mounts inside" "" "$points"
eq "/dev holds only the defaults" "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero" \
  "$(run "$R" ls -A /dev | sort | tr '\n' ' ' | sed 's/ $//')"
run "$R" touch /sys/x 2>/dev/null; [ $? -ne 0 ] && ok "/sys is read-only" || bad "/sys is read-only"
opts=$(run "$R" sh -c "grep -E ' /(proc|dev/shm) ' /proc/self/mountinfo | cut -d' ' -f6")
n=$(echo "$opts" | grep -c 'nosuid,nodev,noexec')
eq "/proc and /dev/shm nosuid,nodev,noexec" 2 "$n"
vol=$(mktemp -d)
echo host > "$vol/in"
eq "volume rw" "host" "$(run -v "$vol:/data" "$R" sh -c 'cat /data/in; echo c > /data/out')"
eq "volume file owned by me on the host" "$me" "$(stat -c %u "$vol/out")"
run -v "$vol:/data:ro" "$R" sh -c 'echo x > /data/in' 2>/dev/null
[ $? -ne 0 ] && [ "$(cat "$vol/in")" = host ] && ok "volume ro" || bad "volume ro" "$(cat "$vol/in")"
if [ -n "$sub_start" ] && [ "$helpers" = yes ]; then
  chmod 777 "$vol"
  run -u 1000:1000 -v "$vol:/data" "$R" touch /data/by1000
  eq "uid 1000 inside is subuid start+999 on the host" "$((sub_start + 999))" "$(stat -c %u "$vol/by1000")"
else
  skipped "uid 1000 inside" "no /etc/subuid range or no newuidmap"
fi
rm -rf "$vol"
eq "-w stays inside the rootfs" "/etc" "$(run -w /../../etc "$R" pwd)"
if [ -n "$sub_start" ] && [ "$helpers" = yes ]; then
  eq "-u 1000:1000" "1000 1000" "$(run -u 1000:1000 "$R" sh -c 'echo $(id -u) $(id -g)')"
else
  # Only my own id is mapped: another uid cannot exist inside, and the error says so.
  err=$(run -u 1000:1000 "$R" true 2>&1); code=$?
  case "$code $err" in "125 "*"must be mapped"*) ok "-u 1000 refused: only my own id is mapped";; *) bad "-u 1000 refused" "$code $err";; esac
fi

# --- chapter 3: the user namespace ------------------------------------------------------------
map=$(run "$R" cat /proc/self/uid_map | awk '{ print $1, $2, $3 }' | tr '\n' ';')
if [ -n "$sub_start" ] && [ "$helpers" = yes ]; then
  eq "uid_map: me as root, then my subuid range" "0 $me 1;1 $sub_start 65535;" "$map"
else
  eq "uid_map: me as root" "0 $me 1;" "$map"
fi
eq "image files I own are root's inside" "0 0" "$(run "$R" stat -c '%u %g' /etc/passwd)"
run --no-overlay "$R" sh -c 'echo rootless > /etc/rootless-test' && [ "$(stat -c %u "$R/etc/rootless-test")" = "$me" ] \
  && ok "--no-overlay: container root writes the image as me" || bad "--no-overlay: container root writes the image as me"
rm -f "$R/etc/rootless-test"
# chapter 5: the overlay, mounted by the child inside its user namespace, keeps the image unchanged.
out=$(run "$R" sh -c 'rm /bin/ls && echo changed > /etc/motd && cat /etc/motd' 2>&1)
if [ "$out" = changed ] && [ -e "$R/bin/ls" ] && ! grep -q changed "$R/etc/motd"; then
  ok "overlay: writes inside never reach the image"
else
  bad "overlay: writes inside never reach the image" "$out"
fi
rm -f "$R/etc/rootless-test"
# chapter 5: a throwaway layer lives in a tmpfs the child made (upperdir names its fd), and
# --disk-layer puts it back in the data directory.
case "$(run "$R" grep ' / / ' /proc/self/mountinfo)" in
  *"upperdir=/proc/self/fd/"*) ok "overlay: a throwaway layer is in memory";;
  *) bad "overlay: a throwaway layer is in memory" "$(run "$R" grep ' / / ' /proc/self/mountinfo 2>&1)";;
esac
case "$(run --disk-layer "$R" grep ' / / ' /proc/self/mountinfo)" in
  *"upperdir=/proc/self/fd/"*|"") bad "overlay: --disk-layer puts the layer on disk";;
  *) ok "overlay: --disk-layer puts the layer on disk";;
esac
run "$R" sh -c 'exec 3<>/dev/ptmx; ls /dev/pts' | grep -qx 0 && ok "/dev/pts works" || bad "/dev/pts works"
err=$(run --userns=host "$R" true 2>&1); code=$?
case "$code $err" in "125 "*"needs root"*) ok "--userns=host refused with a reason";; *) bad "--userns=host refused" "$code $err";; esac
err=$(run -v /tmp:/t:idmap "$R" true 2>&1); code=$?
case "$code $err" in "125 "*":idmap"*) ok ":idmap refused with a reason";; *) bad ":idmap refused" "$code $err";; esac

# --- stage switches ---------------------------------------------------------------------------
[ "$(run --no-net "$R" cat /proc/net/dev | wc -l)" -gt 3 ] && ok "--no-net shows the host's interfaces" || bad "--no-net"
[ "$(run --no-pid "$R" sh -c 'echo $$')" != 1 ] && ok "--no-pid shows host pids" || bad "--no-pid"
eq "--no-uts keeps the host's name" "$(hostname)" "$(run --no-uts "$R" hostname)"

# --- bad input: 125, one line, nothing left ---------------------------------------------------
for args in "/nonexistent true" "-e =x $R true" "-u a:b:c $R true" "--hostname=a_b $R true" "-v /tmp:rel $R true" \
            "--uidmap 0:0:4294967295 $R true" "-w rel $R true"; do
  # shellcheck disable=SC2086
  err=$("$M" run $args 2>&1 </dev/null); code=$?
  if [ $code = 125 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && case $err in *"(hint: "*) true;; *) false;; esac; then
    ok "bad input: $args"
  else
    bad "bad input: $args" "exit $code: $err"
  fi
done

# --- what a normal user cannot have here ------------------------------------------------------
skipped "cgroup limits" "a normal user needs a delegated cgroup v2 subtree; this machine is cgroup v1 hybrid"
skipped "veth networking" "creating a veth pair in the host's network namespace needs root"

# --- nothing left behind ----------------------------------------------------------------------
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  # Ours, and writable by nobody else (minictr creates it 0700 and refuses anything looser).
  mode=$(stat -c '%a' "$base")
  eq "the runtime dir in /tmp is ours and not writable by others" "$me 0" "$(stat -c %u "$base") $((0$mode & 022))"
fi
# (probes.json is the kernel probes' cache of this boot, not a container's)
leftover=$(ls -A "$base" 2>/dev/null | grep -vx probes.json)
eq "no runtime directory left in $base" "" "$leftover"
mine=$(ps -u "$me" -o args= | grep -c '[s]leep 9139')
eq "no container process left" 0 "$mine"

echo
echo "rootless: $pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
