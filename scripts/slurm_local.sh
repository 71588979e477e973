#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the SLURM tests and for trying sweeps.
#
#   sudo scripts/slurm_local.sh start    # install slurm-wlm + munge if missing, start munged, slurmctld, slurmd
#   scripts/slurm_local.sh status        # exit 0 when the node answers and is usable
#   sudo scripts/slurm_local.sh stop     # kill the daemons this script started, by PID
#   source /tmp/sot-slurm/env.sh         # SLURM_CONF for the clients, and the sacct shim first on PATH
#
# Everything lives under $SOT_SLURM_DIR (default /tmp/sot-slurm): slurm.conf, spool, state,
# logs, PID files and env.sh. start and stop are idempotent. No accounting daemon (slurmdbd)
# runs, so `sacct` cannot answer; submitit asks `sacct` for job states, so env.sh puts a small
# `sacct` shim first on PATH that answers from `squeue --states=all` (finished jobs stay in
# slurmctld's memory for MinJobAge = 1 day here), which is all submitit needs:
# JobID|State|NodeList for the requested job ids.
set -euo pipefail

SLURM_DIR=${SOT_SLURM_DIR:-/tmp/sot-slurm}
ENV_FILE="$SLURM_DIR/env.sh"
RUN="$SLURM_DIR/run"
CONF="$SLURM_DIR/slurm.conf"
START_TIMEOUT_S=${SOT_SLURM_START_TIMEOUT_S:-60}

die() { echo "slurm_local.sh: error: $*" >&2; exit 1; }
say() { echo "slurm_local.sh: $*"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (it installs packages and starts daemons): run it with sudo"
}

alive() {  # alive PIDFILE: the process named in PIDFILE is running (any user may ask)
    [ -s "$1" ] && [ -d "/proc/$(cat "$1")" ]
}

install_packages() {
    local missing=0 bin
    for bin in slurmctld slurmd sbatch squeue scontrol sinfo munged munge; do
        command -v "$bin" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "slurm-wlm and munge are missing and there is no apt-get to install them"
    say "installing slurm-wlm and munge (apt-get)"
    # keep the packages' init scripts from starting system-wide daemons during the install
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local rc=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm munge; } > "$SLURM_DIR/apt.log" 2>&1 || rc=$?
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get could not install slurm-wlm and munge (exit $rc); see $SLURM_DIR/apt.log"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already running; using it"
        return 0
    fi
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        chown munge:munge "$key" && chmod 0400 "$key"
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
    local i
    for i in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && [ -s /run/munge/munged.pid ]; then
            cp /run/munge/munged.pid "$RUN/munged.pid"
            return 0
        fi
        sleep 0.2
    done
    die "munged does not answer; see /var/log/munge/munged.log"
}

write_sacct_shim() {
    mkdir -p "$SLURM_DIR/bin"
    cat > "$SLURM_DIR/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct without slurmdbd, for submitit: `sacct -o JobID,State,NodeList --parsable2 -j ID ...`
# answered from slurmctld's memory with squeue (array tasks come as ID_N or ID_[N-M%P], like sacct).
ids=()
while [ $# -gt 0 ]; do
    case "$1" in
        -j|--jobs) ids+=("$2"); shift 2 ;;
        --jobs=*) ids+=("${1#--jobs=}"); shift ;;
        *) shift ;;
    esac
done
echo "JobID|State|NodeList"
for id in "${ids[@]}"; do
    squeue --noheader --states=all --jobs="$id" --format='%i|%T|%N' 2>/dev/null || true
done
EOF
    chmod 755 "$SLURM_DIR/bin/sacct"
}

write_conf() {
    local host node_line
    host=$(hostname -s)
    node_line=$(slurmd -C | head -n 1)
    case "$node_line" in NodeName=*) ;; *) die "slurmd -C did not describe this node: $node_line" ;; esac
    local ctld_host="$host"
    if ! getent hosts "$host" >/dev/null 2>&1; then
        node_line="$node_line NodeAddr=127.0.0.1"
        ctld_host="$host(127.0.0.1)"
    fi
    local node_name=${node_line%% *}
    node_name=${node_name#NodeName=}
    cat > "$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster without accounting
ClusterName=sotlocal
SlurmctldHost=$ctld_host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=86400
SlurmctldPort=${SOT_SLURMCTLD_PORT:-6817}
SlurmdPort=${SOT_SLURMD_PORT:-6818}
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmdSpoolDir=$SLURM_DIR/spool
StateSaveLocation=$SLURM_DIR/state
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$node_line State=UNKNOWN
PartitionName=debug Nodes=$node_name Default=YES MaxTime=7-00:00:00 State=UP
EOF
    # slurmd reads cgroup.conf beside slurm.conf; nothing here uses cgroups
    echo "CgroupPlugin=autodetect" > "$SLURM_DIR/cgroup.conf"
}

write_env() {
    cat > "$ENV_FILE" <<EOF
# source me: clients of the cluster started by scripts/slurm_local.sh
export SLURM_CONF=$CONF
export PATH="$SLURM_DIR/bin:\$PATH"
EOF
}

node_state() {
    SLURM_CONF="$CONF" sinfo --noheader --format='%t' 2>/dev/null | head -n 1 | tr -d ' *'
}

running() {
    alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd.pid" && [ -s "$CONF" ] \
        && case "$(node_state)" in idle|mix|alloc|comp) true ;; *) false ;; esac
}

cmd_start() {
    need_root start
    mkdir -p "$SLURM_DIR"
    install_packages
    if running; then
        say "already running (source $ENV_FILE)"
        return 0
    fi
    cmd_stop quiet
    rm -rf "$SLURM_DIR/state" "$SLURM_DIR/spool"
    mkdir -p "$RUN" "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/log"
    start_munge
    write_conf
    write_sacct_shim
    write_env
    SLURM_CONF="$CONF" slurmctld -i || die "slurmctld did not start; see $SLURM_DIR/log/slurmctld.log"
    SLURM_CONF="$CONF" slurmd || die "slurmd did not start; see $SLURM_DIR/log/slurmd.log"
    local waited=0 state=""
    while [ "$waited" -lt "$((START_TIMEOUT_S * 2))" ]; do
        state=$(node_state)
        case "$state" in
            idle) say "cluster up: partition debug, node idle (source $ENV_FILE)"; return 0 ;;
            down|drain|drng|fail)  # e.g. left down by an earlier slurmd: bring it back
                SLURM_CONF="$CONF" scontrol update nodename=ALL state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
        waited=$((waited + 1))
    done
    die "the node is not idle after ${START_TIMEOUT_S}s (sinfo says '${state:-nothing}'); see $SLURM_DIR/log/"
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, then KILL after 10 s
    local pidfile=$2 pid i
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "slurm_local.sh: $1 (pid $pid) did not stop on TERM: killed" >&2
}

cancel_jobs() {  # so that no training outlives the cluster
    alive "$RUN/slurmctld.pid" || return 0
    local ids i
    ids=$(SLURM_CONF="$CONF" squeue --noheader --format='%A' 2>/dev/null | sort -u | tr '\n' ' ')
    [ -n "${ids// /}" ] || return 0
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $ids 2>/dev/null || true
    for i in $(seq 60); do
        [ -z "$(SLURM_CONF="$CONF" squeue --noheader --format='%A' 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    echo "slurm_local.sh: jobs still running after scancel: $ids" >&2
}

cmd_stop() {
    need_root stop
    cancel_jobs
    stop_pid slurmd "$RUN/slurmd.pid"
    stop_pid slurmctld "$RUN/slurmctld.pid"
    stop_pid munged "$RUN/munged.pid"
    [ "${1:-}" = quiet ] || say "stopped"
}

cmd_status() {
    if running; then
        say "running: node $(node_state) (source $ENV_FILE)"
        return 0
    fi
    say "not running"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
