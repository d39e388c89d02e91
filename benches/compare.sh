#!/usr/bin/env bash
# benches/compare.sh — imgstore import against its peers and the physical limit
# (issue 5, DESIGN.md §6).
#
# What it does
#   1. Builds real images from Debian packages (`apt-get download` + `dpkg -x`):
#      "small" (~21 MB uncompressed, 2 layers) and "big" (~600 MB, 4 layers:
#      base, gcc-12 toolchain, libllvm15/clang, python3.11 + perl). Each becomes
#        - an OCI image layout (umoci init/new/config + `umoci raw add-layer`,
#          gzip layers),
#        - an oci-archive (skopeo, gzip layers) and a docker-archive (skopeo,
#          which writes the layers uncompressed),
#        - an appc ACI: tar of `manifest` + `rootfs/`, gzip.
#      Downloads and built images are cached under $WORK.
#   2. Mounts a sparse file as a loop ext4 (DESIGN.md §6: never the root fs)
#      and puts the inputs, every destination and containerd's root there.
#   3. Runs interleaved rounds (round 1: every tool on every scenario, then
#      round 2, ...) with a fresh destination and a dropped page cache before
#      every timed command:
#        imgstore --store D import FILE           (ACI, docker-archive, oci-archive)
#        imgstore --store D import --verify-layers oci-archive
#        imgstore --store D import LAYOUT         (2nd import of a stored layout)
#        skopeo copy docker-archive:F / oci-archive:F -> oci:D:latest
#        skopeo copy oci:LAYOUT -> oci:D again    (warm: D already holds it)
#        ctr images import --no-unpack            (private containerd, fresh root
#                                                  for every cold import; warm =
#                                                  the same archive a 2nd time)
#      and `examples/stages.rs` for the physical limit of each scenario:
#      max(longest stage, sum of stages / CORES) with CORES=2 (DESIGN.md §6),
#      stages being: ACI read + gunzip + sha512 + write of the tar; docker-
#      archive read + sha256 + write of each member; oci-archive the same for
#      each (compressed) blob, plus gunzip + sha256 of each layer for
#      --verify-layers. See benches/README-compare.md.
#   4. Prints a markdown table (median seconds, MB/s, peak RSS, ratios) and
#      writes it to $WORK/results.md; raw figures go to $WORK/results.tsv and
#      $WORK/stages.tsv, command output to $WORK/logs/.
#
# Timing: wall clock of the command plus a final `sync -f` of the bench
# filesystem, so a tool that does not fsync pays for its write-back too (the
# column "cmd s" has the command alone). Peak RSS is /usr/bin/time's %M; for
# ctr it is the client's plus containerd's VmHWM (reset before each import).
#
# Usage (as root: loop mount, drop_caches, apt-get):
#   benches/compare.sh                # both images, 5 rounds
#   benches/compare.sh --quick        # small image only, 3 rounds (smoke test)
#   benches/compare.sh --rounds 7 --image big
#   WORK=/var/tmp/cmp IMGSTORE=/path/to/imgstore benches/compare.sh
# Options: --quick, --rounds N, --image small|big|all, --no-build (do not run
#   cargo build for imgstore), --loop-size SIZE (default 8G), --wait-idle SECS
#   (default 180: before each round, wait until other processes use < 20% of
#   the CPU, up to that long), -h/--help.
# The machine must be otherwise idle: on 2 cores a concurrent cargo build
#   slows every tool 2-5x. The CPU use of other processes is sampled before
#   every timed command ("busy %" in results.tsv) and summarised in the report.
# Serve (issue 14, block "serve" below): skopeo copy docker://… → oci: from
#   `imgstore serve` and from Debian's docker-registry holding the same image,
#   one pull (serve1) and 16 at once (serve16); peak RSS is the server's.
# Environment: SCENARIOS (default "import fetch pull push repull serve render": which
#   blocks run; e.g. SCENARIOS="pull push repull" benches/compare.sh --image big,
#   SCENARIOS=serve benches/compare.sh --image small --rounds 1,
#   SCENARIOS=render benches/compare.sh --image big),
#   WORK (default /tmp/imgstore-compare), IMGSTORE (default
#   target/release/imgstore, rebuilt with `cargo build --release` first unless
#   --no-build; another path is used as it is),
#   CORES (default 2: the machine size the budget is written for).
# Needs: apt-get install -y skopeo umoci containerd time e2fsprogs (installed
#   by the script when missing and run as root), cargo for imgstore and for
#   examples/stages.rs. A missing or failing imgstore shows as n/a; the peers
#   are still measured.
# umoci is not timed for imports: it has no import of an archive into a store.
#   Its only ways in are building (repack/insert/raw add-layer recompress a
#   rootfs or a tar) and unpack renders a bundle; none is comparable to
#   `imgstore import`. It is the peer of the render block (`umoci raw unpack`).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
WORK=${WORK:-/tmp/imgstore-compare}
IMGSTORE=${IMGSTORE:-$REPO/target/release/imgstore}
CORES=${CORES:-2}
ROUNDS=5
ROUNDS_SET=0
IMAGES=(small big)
BUILD_IMGSTORE=1
LOOP_SIZE=8G
WAIT_IDLE=180 # seconds to wait for other processes to calm down before a round
IDLE_MAX=20   # percent of the machine's CPU others may use when a round starts
SCENARIOS=${SCENARIOS:-import fetch pull push repull serve render}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
want_registry() { want pull || want push || want repull; }

ARGS_GIVEN=("$@")
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while (($#)); do
    case $1 in
        --quick) IMAGES=(small); ((ROUNDS_SET)) || ROUNDS=3 ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; ROUNDS_SET=1; shift ;;
        --rounds=*) ROUNDS=${1#*=}; ROUNDS_SET=1 ;;
        --image) case ${2:?--image needs small, big or all} in
                     all) IMAGES=(small big) ;; small | big) IMAGES=("$2") ;;
                     *) echo "error: --image small|big|all" >&2; exit 2 ;;
                 esac; shift ;;
        --no-build) BUILD_IMGSTORE=0 ;;
        --loop-size) LOOP_SIZE=${2:?}; shift ;;
        --wait-idle) WAIT_IDLE=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive number" >&2; exit 2; }

# --- the images ---------------------------------------------------------------
# One string per layer; packages of a layer are extracted into one directory.
SMALL_LAYERS=("libc6 libgcc-s1" "bash dash busybox")
BIG_LAYERS=(
    "libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 bash dash coreutils perl-base"
    "gcc-12 cpp-12 g++-12 libgcc-12-dev libstdc++-12-dev gfortran-12 libgfortran-12-dev binutils-x86-64-linux-gnu libbinutils"
    "libllvm15 libclang-cpp15 libz3-4 libicu72"
    "python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11 perl-modules-5.36 libperl5.36"
)
IMAGE_FORMAT_VERSION=1 # bump to force a rebuild of cached images

DEBS=$WORK/debs
BUILT=$WORK/images
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
STAGES_TSV=$WORK/stages.tsv
REPORT=$WORK/results.md
LOOPFILE=$WORK/bench.ext4
MNT=$WORK/mnt

log() { printf '%s\n' "$*" >&2; }
warn() { printf '\n!!!!!!!! WARNING: %s\n\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "missing $*; run as root or: apt-get install -y $*"
    if ((!APT_UPDATED)); then
        apt-get update -qq >/dev/null || true
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
    local -A pkg_of=([skopeo]=skopeo [umoci]=umoci [containerd]=containerd [ctr]=containerd
        [/usr/bin/time]=time [mkfs.ext4]=e2fsprogs [losetup]=mount [dpkg-deb]=dpkg
        [gzip]=gzip [tar]=tar)
    local missing=() cmd
    for cmd in "${!pkg_of[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    if ((${#missing[@]})); then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        log "installing: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

# --- building the images (cached in $WORK/images) -----------------------------
deb_of() { # the cached .deb of a package
    local f
    for f in "$DEBS/${1}_"*.deb; do
        [[ -f $f ]] && { echo "$f"; return 0; }
    done
    return 1
}

fetch_debs() {
    mkdir -p "$DEBS"
    local need=() p
    for p in "$@"; do deb_of "$p" >/dev/null || need+=("$p"); done
    ((${#need[@]})) || return 0
    log "downloading ${#need[@]} packages: ${need[*]}"
    if ! (cd "$DEBS" && apt-get download -qq "${need[@]}" >/dev/null 2>&1); then
        apt-get update -qq >/dev/null || true
        APT_UPDATED=1
        (cd "$DEBS" && apt-get download -qq "${need[@]}") || die "apt-get download failed"
    fi
}

build_image() { # build_image NAME LAYER...
    local name=$1; shift
    local dir=$BUILT/$name
    local stamp="v$IMAGE_FORMAT_VERSION $*"
    if [[ -f $dir/.stamp && $(<"$dir/.stamp") == "$stamp" ]]; then
        return 0
    fi
    log "building image '$name' ($# layers) in $dir"
    local all=() group
    for group in "$@"; do read -ra pk <<<"$group"; all+=("${pk[@]}"); done
    fetch_debs "${all[@]}"

    rm -rf "$dir"
    mkdir -p "$dir/work" "$dir/aci/rootfs"
    umoci init --layout "$dir/layout"
    umoci new --image "$dir/layout:latest"
    umoci config --image "$dir/layout:latest" --os linux --architecture amd64 \
        --config.label "org.opencontainers.image.title=example.com/$name" \
        --config.entrypoint /bin/bash
    local i=0 p ldir
    for group in "$@"; do
        i=$((i + 1))
        ldir=$dir/work/layer$i
        mkdir -p "$ldir"
        read -ra pk <<<"$group"
        for p in "${pk[@]}"; do dpkg -x "$(deb_of "$p")" "$ldir"; done
        cp -a "$ldir/." "$dir/aci/rootfs/"
        # Entries named usr/, etc/... as in images built by docker or buildah.
        (cd "$ldir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort |
            tar --sort=name --numeric-owner -cf "$dir/work/layer$i.tar" -T -)
        umoci raw add-layer --image "$dir/layout:latest" \
            --history.created_by "dpkg -x $group" "$dir/work/layer$i.tar"
        rm -rf "$ldir" "$dir/work/layer$i.tar"
    done
    umoci gc --layout "$dir/layout"

    skopeo --insecure-policy copy -q "oci:$dir/layout:latest" "oci-archive:$dir/$name.oci.tar:latest"
    skopeo --insecure-policy copy -q "oci:$dir/layout:latest" \
        "docker-archive:$dir/$name.docker.tar:example.com/$name:latest"
    # skopeo's docker-archive destination stores layers uncompressed; check it.
    local first_layer
    first_layer=$(tar -tf "$dir/$name.docker.tar" | grep -E '^[0-9a-f]{64}\.tar$' | head -n1)
    if [[ $(tar -xOf "$dir/$name.docker.tar" "$first_layer" | head -c2 | od -An -tx1 | tr -d ' ') == 1f8b ]]; then
        warn "docker-archive layers of $name are gzip, not plain"
    fi

    cat >"$dir/aci/manifest" <<EOF
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/$name","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}
EOF
    tar -C "$dir/aci" --sort=name --numeric-owner -cf - manifest rootfs | gzip -6 -n >"$dir/$name.aci"
    tar -C "$dir/aci" --sort=name --numeric-owner -cf - manifest rootfs | wc -c >"$dir/aci-uncompressed-bytes"
    rm -rf "$dir/aci" "$dir/work"
    echo "$stamp" >"$dir/.stamp"
}

# --- the bench filesystem -----------------------------------------------------
LOOPDEV=
MOUNTED=0
FALLBACK=0
SOCKDIR=
CTRD_PID=
FS_NOTE=
DROP_NOTE=

cleanup() {
    local rc=$?
    set +e
    ctrd_stop
    registry_stop
    serve_stop
    if ((MOUNTED)); then
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
        MOUNTED=0
    fi
    [[ -n $LOOPDEV ]] && losetup -d "$LOOPDEV" 2>/dev/null
    rm -f "$LOOPFILE"
    ((FALLBACK)) && rm -rf "$MNT"
    [[ -n $SOCKDIR ]] && rm -rf "$SOCKDIR"
    exit "$rc"
}

mount_bench_fs() {
    mkdir -p "$MNT"
    # Leftovers of an interrupted run of this script (same paths, ours).
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    if [[ -f $LOOPFILE ]]; then
        local dev
        for dev in $(losetup -j "$LOOPFILE" 2>/dev/null | cut -d: -f1); do losetup -d "$dev" || true; done
        rm -f "$LOOPFILE"
    fi
    : >"$LOGS/mkfs.log"
    [[ $(id -u) -eq 0 ]] || echo "not root" >>"$LOGS/mkfs.log"
    if [[ $(id -u) -eq 0 ]] && truncate -s "$LOOP_SIZE" "$LOOPFILE" 2>>"$LOGS/mkfs.log" &&
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOPFILE" 2>"$LOGS/mkfs.log"; then
        # Direct I/O keeps the backing file from being cached twice.
        LOOPDEV=$(losetup --find --show --direct-io=on "$LOOPFILE" 2>/dev/null) ||
            LOOPDEV=$(losetup --find --show "$LOOPFILE" 2>>"$LOGS/mkfs.log") || LOOPDEV=
        if [[ -n $LOOPDEV ]] && mount "$LOOPDEV" "$MNT" 2>>"$LOGS/mkfs.log"; then
            MOUNTED=1
            FS_NOTE="loop-mounted ext4 ($LOOP_SIZE sparse file, $LOOPDEV, direct-io=$(cat /sys/block/${LOOPDEV#/dev/}/loop/dio 2>/dev/null || echo ?), options $(findmnt -no OPTIONS "$MNT"))"
            log "bench filesystem: $FS_NOTE"
            return 0
        fi
    fi
    [[ -n $LOOPDEV ]] && { losetup -d "$LOOPDEV" || true; LOOPDEV=; }
    rm -f "$LOOPFILE"
    FALLBACK=1
    FS_NOTE="NOT a loop mount: fell back to a plain directory on $(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$WORK" | tr -s ' ') (loop mount failed: $(tr '\n' ' ' <"$LOGS/mkfs.log" 2>/dev/null))"
    warn "could not loop-mount an ext4 (see $LOGS/mkfs.log); using $MNT on the host filesystem. Figures are NOT comparable with DESIGN.md §6."
    mkdir -p "$MNT"
}

DROP_OK=1
drop_caches() {
    sync
    if ((DROP_OK)); then
        if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
            DROP_OK=0
            DROP_NOTE="echo 3 > /proc/sys/vm/drop_caches was refused: every read after the first is from a warm page cache"
            warn "$DROP_NOTE"
        fi
    fi
}

# --- containerd ---------------------------------------------------------------
CTRD_ROOT=
SOCK=
ctr_() { ctr --address "$SOCK" -n bench "$@"; }

ctrd_start() { # a fresh, private containerd on the bench filesystem
    ctrd_stop
    CTRD_ROOT=$MNT/containerd
    rm -rf "$CTRD_ROOT"
    mkdir -p "$CTRD_ROOT/root" "$CTRD_ROOT/state"
    [[ -n $SOCKDIR ]] || SOCKDIR=$(mktemp -d /tmp/imgstore-compare-ctrd.XXXXXX)
    SOCK=$SOCKDIR/containerd.sock # short path: unix sockets are limited to 108 bytes
    cat >"$CTRD_ROOT/config.toml" <<EOF
version = 2
root = "$CTRD_ROOT/root"
state = "$CTRD_ROOT/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_ROOT/root/opt"
EOF
    containerd --config "$CTRD_ROOT/config.toml" >>"$LOGS/containerd.log" 2>&1 &
    CTRD_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        if ctr --address "$SOCK" version >/dev/null 2>&1; then return 0; fi
        kill -0 "$CTRD_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "containerd did not come up; see $LOGS/containerd.log"
    ctrd_stop
    return 1
}

ctrd_stop() {
    if [[ -n $CTRD_PID ]]; then
        kill "$CTRD_PID" 2>/dev/null || true
        wait "$CTRD_PID" 2>/dev/null || true
        CTRD_PID=
    fi
    if [[ -n $CTRD_ROOT ]]; then rm -rf "$CTRD_ROOT"; CTRD_ROOT=; fi
}

# --- other load on the machine -------------------------------------------------
cpu_busy() { # percent of all cores' time spent non-idle over the next $1 seconds
    local c a b ia ib ta=0 tb=0
    read -ra a </proc/stat
    sleep "$1"
    read -ra b </proc/stat
    for c in 1 2 3 4 5 6 7 8; do ta=$((ta + a[c])); tb=$((tb + b[c])); done
    ia=$((a[4] + a[5])); ib=$((b[4] + b[5]))
    if ((tb > ta)); then echo $((100 * ((tb - ta) - (ib - ia)) / (tb - ta))); else echo 0; fi
}

BUSY_ROUNDS=()
wait_idle() { # before a round: wait (up to WAIT_IDLE s) until others leave the CPU alone
    local busy waited=0
    busy=$(cpu_busy 1)
    while ((busy > IDLE_MAX && waited < WAIT_IDLE)); do
        ((waited > 0)) || log "other processes use ${busy}% of the CPU; waiting up to ${WAIT_IDLE}s for them ..."
        sleep 4
        waited=$((waited + 5))
        busy=$(cpu_busy 1)
    done
    BUSY_ROUNDS+=("$busy")
    ((busy <= IDLE_MAX)) || warn "starting a round while other processes use ${busy}% of the CPU: figures are disturbed"
}

# --- measuring ----------------------------------------------------------------
TIMEFILE=
RSS_PID= # extra process whose peak RSS counts (containerd)
T_SECS='' T_CMD='' T_RSS='' T_RC='' T_BUSY=''

ns_to_s() { printf '%d.%06d' $(($1 / 1000000000)) $((($1 % 1000000000) / 1000)); }

run_timed() { # run_timed LOG CMD... — sets T_SECS T_CMD T_RSS (kB) T_RC
    local logf=$1; shift
    drop_caches
    T_BUSY=$(cpu_busy 0.3) # others' load just before (we are idle now)
    if [[ -n $RSS_PID ]]; then { echo 5 >"/proc/$RSS_PID/clear_refs"; } 2>/dev/null || true; fi
    local t0 t1 t2
    T_RC=0
    t0=$(date +%s%N)
    /usr/bin/time -f '%e %M' -o "$TIMEFILE" "$@" >"$logf" 2>&1 || T_RC=$?
    t1=$(date +%s%N)
    sync -f "$MNT" 2>/dev/null || sync
    t2=$(date +%s%N)
    T_CMD=$(ns_to_s $((t1 - t0)))
    T_SECS=$(ns_to_s $((t2 - t0)))
    T_RSS=$(awk 'END { print $2 + 0 }' "$TIMEFILE")
    if [[ -n $RSS_PID ]]; then
        T_RSS=$((T_RSS + $(awk '/^VmHWM/ { v = $2 } END { print v + 0 }' "/proc/$RSS_PID/status" 2>/dev/null || echo 0)))
    fi
}

record() { # record IMG SCN TOOL ROUND BYTES STATUS [SECS CMD RSS BUSY]
    local img=$1 scn=$2 tool=$3 round=$4 bytes=$5 status=$6
    local secs=${7:-} cmd=${8:-} rss=${9:-} busy=${10:-}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$img" "$scn" "$tool" "$round" "$status" \
        "${secs:--}" "${cmd:--}" "${rss:--}" "$bytes" "${busy:--}" >>"$RESULTS"
    if [[ $status == ok ]]; then
        local rss_txt=
        [[ $tool == limit ]] || rss_txt=$(printf '  RSS %5d MiB  (others %s%% CPU before)' $((${rss:-0} / 1024)) "${busy:-?}")
        printf '  %-5s %-10s %-9s %8.3f s  %7.1f MB/s%s\n' "$img" "$scn" "$tool" "$secs" \
            "$(awk -v b="$bytes" -v s="$secs" 'BEGIN { print (s > 0 ? b / 1e6 / s : 0) }')" "$rss_txt" >&2
    else
        printf '  %-5s %-10s %-9s %s\n' "$img" "$scn" "$tool" "$status" >&2
    fi
}

# measure IMG SCN TOOL ROUND BYTES CHECK CMD... — time CMD, then run CHECK
# (a shell snippet, untimed) to make sure it really imported something.
measure() {
    local img=$1 scn=$2 tool=$3 round=$4 bytes=$5 check=$6; shift 6
    local logf="$LOGS/$img.$scn.$tool.r$round.log" status=ok
    run_timed "$logf" "$@"
    if ((T_RC != 0)); then
        status=failed
        log "    $tool failed (exit $T_RC): $(tail -n1 "$logf")  [$logf]"
    elif [[ -n $check ]] && ! (eval "$check") >>"$logf" 2>&1; then
        status=failed
        log "    $tool exited 0 but its result is missing ($check)  [$logf]"
    fi
    if [[ $status == ok ]]; then
        record "$img" "$scn" "$tool" "$round" "$bytes" ok "$T_SECS" "$T_CMD" "$T_RSS" "$T_BUSY"
    else
        record "$img" "$scn" "$tool" "$round" "$bytes" "$status"
    fi
}

fresh() { # an empty destination directory (removal done and synced, untimed)
    rm -rf "$MNT/dest" "$MNT/tmp"
    mkdir -p "$MNT/dest" "$MNT/tmp"
    sync -f "$MNT" 2>/dev/null || sync
}

size_of() { du -sb --apparent-size "$1" | cut -f1; }

# --- programs under test ------------------------------------------------------
IMGSTORE_OK=0
IMGSTORE_NOTE=
prepare_imgstore() {
    local stale=
    if ((BUILD_IMGSTORE)) && [[ $IMGSTORE == "$REPO/target/release/imgstore" ]] &&
        command -v cargo >/dev/null; then
        # Always (incremental): measure the source as it is now.
        log "building imgstore (cargo build --release) ..."
        if ! (cd "$REPO" && cargo build --release --bin imgstore) >"$LOGS/cargo-imgstore.log" 2>&1; then
            log "  cargo build failed; see $LOGS/cargo-imgstore.log"
            stale=" — STALE: cargo build failed, this is an older build"
        fi
    fi
    if [[ ! -x $IMGSTORE ]]; then
        IMGSTORE_NOTE="imgstore binary $IMGSTORE not found: its rows are n/a"
    elif ! "$IMGSTORE" --help >"$LOGS/imgstore-help.log" 2>&1; then
        IMGSTORE_NOTE="$IMGSTORE --help fails: imgstore rows are n/a"
    elif ! grep -qw import "$LOGS/imgstore-help.log"; then
        IMGSTORE_NOTE="$IMGSTORE has no import command yet: imgstore rows are n/a"
    else
        IMGSTORE_OK=1
        IMGSTORE_NOTE="imgstore: $IMGSTORE ($("$IMGSTORE" --version 2>/dev/null || echo 'no --version'), built $(date -u -r "$IMGSTORE" '+%Y-%m-%d %H:%M UTC')$stale)"
        [[ -z $stale ]] || warn "$IMGSTORE_NOTE"
        return 0
    fi
    warn "$IMGSTORE_NOTE"
}

STAGES_BIN=
prepare_stages() {
    command -v cargo >/dev/null || { warn "cargo not found: no physical limit"; return 0; }
    log "building examples/stages.rs ..."
    if (cd "$REPO" && cargo build --release --example stages) >"$LOGS/cargo-stages.log" 2>&1; then
        STAGES_BIN=$REPO/target/release/examples/stages
        return 0
    fi
    # The example links the library; while src/ does not build, build the
    # same file as a stand-alone crate with the versions pinned by Cargo.lock.
    log "  the example does not build inside the package (see $LOGS/cargo-stages.log); building it stand-alone"
    local crate=$WORK/stages-crate
    mkdir -p "$crate"
    cat >"$crate/Cargo.toml" <<EOF
[package]
name = "stages"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "stages"
path = "$REPO/examples/stages.rs"

[dependencies]
anyhow = "1"
clap = { version = "4", features = ["derive"] }
flate2 = { version = "1", default-features = false, features = ["zlib-rs"] }
sha2 = "0.11"
libc = "0.2"

[workspace]
EOF
    cp "$REPO/Cargo.lock" "$crate/Cargo.lock" 2>/dev/null || true
    if (cd "$crate" && { cargo build --release --offline 2>/dev/null || cargo build --release; }) \
        >>"$LOGS/cargo-stages.log" 2>&1; then
        STAGES_BIN=$crate/target/release/stages
    else
        warn "examples/stages.rs does not build (see $LOGS/cargo-stages.log): no physical limit"
    fi
}

# --- one round of one image ---------------------------------------------------
declare -A ST    # "source:stage" -> secs (all files), from the last stages run
declare -A ITEMS # "source" -> secs of each (file, stage), space-separated

run_stages() { # run_stages IMG ROUND SOURCE STAGES FILE...
    local img=$1 round=$2 src=$3 list=$4; shift 4
    local out drop=()
    mkdir -p "$MNT/dest/stages"
    # Cold reads for the read stage; the other stages work from memory. A
    # write stage also starts each file with a dropped cache: no dirty pages
    # of what came before to write back.
    [[ ,$list, == *,read,* || ,$list, == *,copy,* || ,$list, == *,write,* ]] && drop=(--drop-caches)
    if ! out=$("$STAGES_BIN" --dir "$MNT/dest/stages" "${drop[@]}" --cores "$CORES" \
        --stages "$list" "$@" 2>>"$LOGS/stages.log"); then
        log "    stages failed on $src; see $LOGS/stages.log"
        return 1
    fi
    printf '%s\n' "$out" >>"$LOGS/stages.log"
    local line stage bytes secs
    ITEMS[$src]=
    while read -r line; do
        if [[ $line == stage=*secs=* ]]; then
            ITEMS[$src]+=" $(sed -E 's/.* secs=([0-9.]+).*/\1/' <<<"$line")"
            continue
        fi
        [[ $line == total\ * ]] || continue
        stage=$(sed -E 's/.* stage=([^ ]+).*/\1/' <<<"$line")
        bytes=$(sed -E 's/.* bytes=([0-9]+).*/\1/' <<<"$line")
        secs=$(sed -E 's/.* secs=([0-9.]+).*/\1/' <<<"$line")
        ST[$src:$stage]=$secs
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$img" "$round" "$src" "$stage" "$secs" "$bytes" >>"$STAGES_TSV"
    done <<<"$out"
}

bound() { # bound KEY... — max(longest, sum / CORES) of the named stages
    local k vals=() more
    for k in "$@"; do
        if [[ $k == items:* ]]; then # every (file, stage) of a source: independent streams
            [[ -n ${ITEMS[${k#items:}]:-} ]] || return 1
            read -ra more <<<"${ITEMS[${k#items:}]}"
            vals+=("${more[@]}")
            continue
        fi
        [[ -n ${ST[$k]:-} ]] || return 1
        vals+=("${ST[$k]}")
    done
    awk -v c="$CORES" 'BEGIN { for (i = 1; i < ARGC; i++) { s += ARGV[i]; if (ARGV[i] > m) m = ARGV[i] }
                                printf "%.6f", (m > s / c ? m : s / c) }' "${vals[@]}"
}

limits() { # the physical limit of each scenario, from examples/stages.rs
    local img=$1 r=$2 in=$MNT/in/$1
    if [[ -z $STAGES_BIN ]]; then
        local s
        for s in aci docker oci oci-verify; do record "$img" "$s" limit "$r" 0 n/a; done
        return 0
    fi
    ST=()
    ITEMS=()
    fresh
    local busy
    busy=$(cpu_busy 0.3)
    run_stages "$img" "$r" aci read,gunzip,sha512-u,write-u "$in/$img.aci" || true
    # The archives' members as separate files, so that the write stage pays
    # one fsync per blob as an import does (same bytes as the archive, less
    # the tar headers).
    local docker_files=()
    mapfile -t docker_files < <(find "$in/docker-members" -maxdepth 1 -type f | sort)
    # copy: read and write at once, to see whether the disk overlaps them.
    run_stages "$img" "$r" docker read,sha256,write,copy "${docker_files[@]}" || true
    run_stages "$img" "$r" oci read,sha256,write,copy "$in/layout/blobs/sha256/"* || true
    run_stages "$img" "$r" layers gunzip,sha256-u "$in/layout/blobs/sha256/"* || true
    fresh
    local b
    # ACI: read compressed, decompress, sha512 of the tar, write it.
    if b=$(bound aci:read aci:gunzip aci:sha512-u aci:write-u); then
        record "$img" aci limit "$r" "$(size_of "$in/$img.aci")" ok "$b" "$b" 0 "$busy"
    else record "$img" aci limit "$r" 0 failed; fi
    # docker-archive, plain layers: read, sha256, write (each member).
    if b=$(bound docker:read docker:sha256 docker:write); then
        record "$img" docker limit "$r" "$(size_of "$in/$img.docker.tar")" ok "$b" "$b" 0 "$busy"
        disk_limit "$img" docker "$r" "$b" docker:copy "$(size_of "$in/$img.docker.tar")" "$busy"
    else record "$img" docker limit "$r" 0 failed; fi
    # oci-archive, gzip layers: read, sha256 of the compressed blobs, write them (each blob).
    if b=$(bound oci:read oci:sha256 oci:write); then
        record "$img" oci limit "$r" "$(size_of "$in/$img.oci.tar")" ok "$b" "$b" 0 "$busy"
        disk_limit "$img" oci "$r" "$b" oci:copy "$(size_of "$in/$img.oci.tar")" "$busy"
    else record "$img" oci limit "$r" 0 failed; fi
    # ... and with --verify-layers: decompress the layers and sha256 their
    # diff_ids. Layers are independent streams, so each layer's gunzip and
    # sha256 is a stage of its own: two layers can decompress at once.
    if b=$(bound oci:read oci:sha256 oci:write items:layers); then
        record "$img" oci-verify limit "$r" "$(size_of "$in/$img.oci.tar")" ok "$b" "$b" 0 "$busy"
    else record "$img" oci-verify limit "$r" 0 failed; fi
}

disk_limit() { # disk_limit IMG SCN ROUND LIMIT COPYKEY BYTES BUSY — max(limit, copy)
    # The two-core formula lets read and write overlap as if each had a
    # device of its own; `copy` measures what one disk gives when it must
    # do both. An import that stores what it reads cannot beat either.
    local img=$1 scn=$2 r=$3 b=$4 key=$5 bytes=$6 busy=$7 d
    [[ -n ${ST[$key]:-} ]] || return 0
    d=$(awk -v a="$b" -v c="${ST[$key]}" 'BEGIN { printf "%.6f", (a > c ? a : c) }')
    record "$img" "$scn" disk "$r" "$bytes" ok "$d" "$d" 0 "$busy"
}

imgstore_import() { # imgstore_import IMG SCN ROUND BYTES ARGS...
    local img=$1 scn=$2 r=$3 bytes=$4; shift 4
    if ((!IMGSTORE_OK)); then record "$img" "$scn" imgstore "$r" "$bytes" n/a; return 0; fi
    fresh
    measure "$img" "$scn" imgstore "$r" "$bytes" "" "$IMGSTORE" --store "$MNT/dest/store" import "$@"
    fresh
}

skopeo_copy() { # skopeo_copy IMG SCN ROUND BYTES SRC [EXTRA...]
    local img=$1 scn=$2 r=$3 bytes=$4 src=$5; shift 5
    fresh
    measure "$img" "$scn" skopeo "$r" "$bytes" "test -s '$MNT/dest/oci/index.json'" \
        skopeo --insecure-policy --tmpdir "$MNT/tmp" copy -q "$@" "$src" "oci:$MNT/dest/oci:latest"
    fresh
}

ctr_import() { # ctr_import IMG SCN ROUND BYTES FILE [EXTRA...] — cold, and warm for oci
    local img=$1 scn=$2 r=$3 bytes=$4 file=$5; shift 5
    fresh
    if ! ctrd_start; then
        record "$img" "$scn" ctr "$r" "$bytes" failed
        [[ $scn == oci ]] && record "$img" warm ctr "$r" "$bytes" failed
        return 0
    fi
    local check="ctr --address '$SOCK' -n bench images ls -q | grep -q 'example.com/$img'"
    RSS_PID=$CTRD_PID
    measure "$img" "$scn" ctr "$r" "$bytes" "$check" \
        ctr --address "$SOCK" -n bench images import --no-unpack "$@" "$file"
    if [[ $scn == oci ]]; then
        # Warm: the same archive again into the containerd that holds it.
        measure "$img" warm ctr "$r" "$bytes" "$check" \
            ctr --address "$SOCK" -n bench images import --no-unpack "$@" "$file"
    fi
    RSS_PID=
    ctrd_stop
    fresh
}

in_turn() { # in_turn R CMD... — run the commands, starting with number (R-1) mod N
    # What a step leaves on the disk slows the step after it: on this VM an
    # import that follows the deletion of a 600 MB store runs up to twice as
    # slow as one that follows a smaller one. Taking the tools of a scenario
    # in turn, round by round, lets each tool follow each predecessor alike
    # instead of one tool always following the same one. (Paths here hold
    # no spaces: $MNT is ours.)
    local r=$1 i; shift
    local cmds=("$@")
    for ((i = 0; i < ${#cmds[@]}; i++)); do
        eval "${cmds[(r - 1 + i) % ${#cmds[@]}]}"
    done
}

round() { # round IMG R — every tool on every scenario once
    local img=$1 r=$2
    log "--- round $r/$ROUNDS, image $img"

    if want import; then import_round "$img" "$r"; fi
    if want fetch; then fetch_round "$img" "$r"; fi
    if want serve; then serve_round "$img" "$r"; fi
    if want_registry; then registry_round "$img" "$r"; fi # issue 11
    if want render; then render_round "$img" "$r"; fi
}

import_round() { # import_round IMG R — every import scenario once
    local img=$1 r=$2 in=$MNT/in/$1
    local aci=$in/$img.aci docker=$in/$img.docker.tar oci=$in/$img.oci.tar layout=$in/layout
    local aci_b docker_b oci_b layout_b
    aci_b=$(size_of "$aci"); docker_b=$(size_of "$docker"); oci_b=$(size_of "$oci"); layout_b=$(size_of "$layout")

    limits "$img" "$r"

    imgstore_import "$img" aci "$r" "$aci_b" "$aci"

    in_turn "$r" \
        "imgstore_import $img docker $r $docker_b $docker" \
        "skopeo_copy $img docker $r $docker_b docker-archive:$docker --dest-oci-accept-uncompressed-layers" \
        "ctr_import $img docker $r $docker_b $docker"

    in_turn "$r" \
        "imgstore_import $img oci $r $oci_b $oci" \
        "skopeo_copy $img oci $r $oci_b oci-archive:$oci" \
        "ctr_import $img oci $r $oci_b $oci --base-name example.com/$img"

    imgstore_import "$img" oci-verify "$r" "$oci_b" --verify-layers "$oci"

    # Warm: the destination already holds the image; time the second import.
    if ((IMGSTORE_OK)); then
        fresh
        if "$IMGSTORE" --store "$MNT/dest/store" import "$layout" >"$LOGS/$img.warm.imgstore.r$r.first.log" 2>&1; then
            measure "$img" warm imgstore "$r" "$layout_b" "" "$IMGSTORE" --store "$MNT/dest/store" import "$layout"
        else
            record "$img" warm imgstore "$r" "$layout_b" failed
        fi
    else
        record "$img" warm imgstore "$r" "$layout_b" n/a
    fi
    fresh
    if skopeo --insecure-policy --tmpdir "$MNT/tmp" copy -q "oci:$layout:latest" "oci:$MNT/dest/oci:latest" \
        >"$LOGS/$img.warm.skopeo.r$r.first.log" 2>&1; then
        measure "$img" warm skopeo "$r" "$layout_b" "test -s '$MNT/dest/oci/index.json'" \
            skopeo --insecure-policy --tmpdir "$MNT/tmp" copy -q "oci:$layout:latest" "oci:$MNT/dest/oci:latest"
    else
        record "$img" warm skopeo "$r" "$layout_b" failed
    fi
    fresh
}

# --- serve: skopeo pulling from imgstore serve vs docker-registry (issue 14) ---
# For each image, once: a store holding it (the layout imported, tagged
# bench/IMG:latest) and a docker-registry storage holding the same image
# (pushed by skopeo: the same manifest and blobs), both on the bench
# filesystem. Each round starts both servers and times, in turn, skopeo
# copying the image out of each into a fresh oci: layout (serve1), and 16
# such copies at once (serve16, until the last is done; MB/s is the
# aggregate). The page cache is dropped before each, so the servers read
# cold. Peak RSS is the server's alone (VmHWM, reset before each command).
# Targets: serve1 at least as fast as the registry, serve16 at least 1.5x
# its aggregate throughput, the server's RSS at most 64 MB.
SERVE_PORT=${SERVE_PORT:-15500}
REGISTRY_PORT=${REGISTRY_PORT:-15501}
SERVE_PID= REGISTRY_PID=

serve_up() { # serve_up PORT: true once GET /v2/ answers 200
    local status=
    { exec 9<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&9
    read -r _ status _ <&9 || true
    exec 9<&-
    [[ $status == 200 ]]
}

serve_wait() { # serve_wait PORT PID NAME
    local i
    for ((i = 0; i < 200; i++)); do
        serve_up "$1" && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    log "$3 did not come up on port $1; see $LOGS/$3.log"
    return 1
}

serve_stop() {
    local pid
    for pid in "$SERVE_PID" "$REGISTRY_PID"; do
        [[ -n $pid ]] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVE_PID= REGISTRY_PID=
}

serve_start() { # serve_start IMG: both servers, with the image in both
    local img=$1 dir=$MNT/serve/$1 key
    command -v docker-registry >/dev/null || apt_install docker-registry
    mkdir -p "$dir"
    printf '%s\n' "version: 0.1" "log:" "  level: info" "storage:" "  filesystem:" \
        "    rootdirectory: $dir/registry" "  delete:" "    enabled: true" "http:" \
        "  addr: 127.0.0.1:$REGISTRY_PORT" "  secret: compare-$img" >"$dir/registry.yml"
    docker-registry serve "$dir/registry.yml" >>"$LOGS/docker-registry.log" 2>&1 &
    REGISTRY_PID=$!
    "$IMGSTORE" --store "$dir/store" serve --listen "127.0.0.1:$SERVE_PORT" \
        >>"$LOGS/imgstore-serve.log" 2>&1 &
    SERVE_PID=$!
    serve_wait "$REGISTRY_PORT" "$REGISTRY_PID" docker-registry || return 1
    serve_wait "$SERVE_PORT" "$SERVE_PID" imgstore-serve || return 1
    if [[ ! -f $dir/.loaded ]]; then
        log "serve: loading $img into the store and the registry (untimed)"
        key=$("$IMGSTORE" --store "$dir/store" import "$MNT/in/$img/layout" | tail -n1) &&
            "$IMGSTORE" --store "$dir/store" tag "$key" "bench/$img:latest" >/dev/null &&
            skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$MNT/in/$img/layout:latest" \
                "docker://127.0.0.1:$REGISTRY_PORT/bench/$img:latest" >>"$LOGS/serve-load.log" 2>&1 ||
            { log "serve: loading $img failed; see $LOGS/serve-load.log"; return 1; }
        touch "$dir/.loaded"
    fi
}

serve_pulls() { # serve_pulls IMG SCN ROUND N TOOL PORT PID: N skopeo copies at once
    local img=$1 scn=$2 r=$3 n=$4 tool=$5 port=$6 pid=$7 bytes
    bytes=$(($(size_of "$MNT/in/$img/layout") * n))
    fresh
    local logf="$LOGS/$img.$scn.$tool.r$r.log" i cmd=
    for ((i = 1; i <= n; i++)); do
        cmd+="skopeo --insecure-policy --tmpdir '$MNT/tmp' copy -q --src-tls-verify=false"
        cmd+=" docker://127.0.0.1:$port/bench/$img:latest oci:'$MNT/dest/p$i:latest' & "
    done
    cmd+='fail=0; for job in $(jobs -p); do wait "$job" || fail=1; done; exit $fail'
    { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null || true
    run_timed "$logf" bash -c "$cmd"
    local rss
    rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    if ((T_RC == 0)) && [[ -s $MNT/dest/p$n/index.json ]]; then
        record "$img" "$scn" "$tool" "$r" "$bytes" ok "$T_SECS" "$T_CMD" "$rss" "$T_BUSY"
    else
        log "    $tool: $n pulls failed (exit $T_RC): $(tail -n1 "$logf")  [$logf]"
        record "$img" "$scn" "$tool" "$r" "$bytes" failed
    fi
    fresh
}

serve_round() { # serve_round IMG R
    local img=$1 r=$2 n scn
    if ((!IMGSTORE_OK)) || ! serve_start "$img"; then
        for scn in serve1 serve16; do
            record "$img" "$scn" imgstore "$r" 0 n/a
            record "$img" "$scn" registry "$r" 0 n/a
        done
        serve_stop
        return 0
    fi
    for n in 1 16; do
        in_turn "$r" \
            "serve_pulls $img serve$n $r $n imgstore $SERVE_PORT $SERVE_PID" \
            "serve_pulls $img serve$n $r $n registry $REGISTRY_PORT $REGISTRY_PID"
    done
    serve_stop
}

serve_report() {
    echo "### imgstore serve vs docker-registry: skopeo copy docker://… → oci:"
    echo
    echo "| image | pulls at once | server | median s | MB/s (all pulls) | server peak RSS MiB | imgstore ÷ registry throughput | ok/runs |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|"
    awk -F'\t' -v images="${IMAGES[*]}" '
        function sortn(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        function median(k,    n, i, v) { n = cnt[k]; if (!n) return -1; for (i = 1; i <= n; i++) v[i] = val[k, i]; sortn(v, n); return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
        $1 == "image" || $2 !~ /^serve/ { next }
        { k = $1 SUBSEP $2 SUBSEP $3; runs[k]++; bytes[k] = $9
          if ($5 == "ok") { val[k, ++cnt[k]] = $6 + 0; if ($8 + 0 > rss[k]) rss[k] = $8 + 0 } }
        END {
            ni = split(images, imgs, " ")
            for (i = 1; i <= ni; i++) for (s = 1; s <= 2; s++) {
                scn = (s == 1) ? "serve1" : "serve16"
                ms = median(imgs[i] SUBSEP scn SUBSEP "imgstore"); mr = median(imgs[i] SUBSEP scn SUBSEP "registry")
                for (t = 1; t <= 2; t++) {
                    tool = (t == 1) ? "imgstore" : "registry"; k = imgs[i] SUBSEP scn SUBSEP tool
                    if (!(k in runs)) continue
                    m = median(k)
                    printf "| %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", imgs[i], substr(scn, 6),
                        (tool == "imgstore") ? "imgstore serve" : "docker-registry",
                        (m < 0) ? "n/a" : sprintf("%.3f", m), (m > 0) ? sprintf("%.0f", bytes[k] / 1e6 / m) : "n/a",
                        (m < 0) ? "n/a" : sprintf("%.0f", rss[k] / 1024),
                        (tool == "imgstore" && ms > 0 && mr > 0) ? sprintf("%.2f", mr / ms) : "",
                        cnt[k] + 0, runs[k]
                }
            }
        }' "$RESULTS"
    echo
    echo "Targets (issue 14): one pull at least as fast as docker-registry (ratio ≥ 1), 16 at once at least 1.5× its aggregate throughput, imgstore serve's peak RSS ≤ 64 MB. MB/s is the layout's blob bytes times the pulls over the time until the last ends; each pull also writes its oci: layout on the bench filesystem."
    echo
}

# awk functions the fetch and render tables share: medians over rounds of
# arr[key, 1..cnt[key]], and how figures print.
STATS_AWK='
function sortn(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
function med(arr, key,    n, i, v) {
    n = cnt[key]; if (n == 0) return -1
    for (i = 1; i <= n; i++) v[i] = arr[key, i]
    sortn(v, n)
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function fmt(x) { return x < 0 ? "n/a" : sprintf("%.3f", x) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "n/a" : sprintf("%.2f", a / b) }
'

# --- fetch by URL (issue 10) ------------------------------------------------------
# `imgstore fetch` of the ACI and of the oci-archive from nginx on loopback,
# against `imgstore import` of the same local file and against `curl -o` of it
# followed by `imgstore import` — unthrottled, and at a network's pace (nginx
# `limit_rate 100m`, 100 MB/s per connection). Targets (issue 10): unthrottled,
# fetch <= 1.2 x the local import; at 100m, fetch <= 0.8 x curl + import (the
# download overlaps the import instead of preceding it); peak RSS <= 64 MB.
# Each nginx (Debian's nginx-light) has a private prefix under $WORK, serves
# $MNT/in/IMG and lives for one round of one image. Everything of this scenario
# is in this block; round() calls fetch_round, report() calls fetch_report.
FETCH_NGINX_PIDS=()
declare -A FETCH_PORT # pace (plain, 100m) -> port

fetch_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fetch_nginx_start() { # fetch_nginx_start PACE DOCROOT DIRECTIVES — sets FETCH_PORT[PACE]
    local pace=$1 root=$2 directives=$3 port prefix i
    port=$(fetch_free_port) || return 1
    prefix=$WORK/fetch-nginx-$pace
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cat >"$prefix/nginx.conf" <<EOF
pid $prefix/nginx.pid;
error_log $prefix/error.log notice;
events { worker_connections 64; }
http {
    default_type application/octet-stream;
    access_log $prefix/access.log;
    sendfile on;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    server {
        listen 127.0.0.1:$port;
        root $root;
        $directives
    }
}
EOF
    /usr/sbin/nginx -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off; master_process off;' \
        >>"$LOGS/fetch-nginx.log" 2>&1 &
    FETCH_NGINX_PIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            FETCH_PORT[$pace]=$port
            return 0
        fi
        sleep 0.05
    done
    log "nginx for fetch ($pace) did not come up; see $LOGS/fetch-nginx.log"
    return 1
}

fetch_nginx_stop() {
    local pid
    for pid in "${FETCH_NGINX_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    FETCH_NGINX_PIDS=()
}

fetch_measure() { # fetch_measure IMG SCN TOOL R BYTES FILE URL
    local img=$1 scn=$2 tool=$3 r=$4 bytes=$5 file=$6 url=$7 d=$MNT/dest/store
    # grep -c reads it all: `imgstore images --json` fails on a pipe closed early.
    local check="'$IMGSTORE' --store '$d' images --json | grep -c '\"key\"' >/dev/null"
    fresh
    case $tool in
        fetch) measure "$img" "$scn" fetch "$r" "$bytes" "$check" "$IMGSTORE" --store "$d" fetch "$url" ;;
        import) measure "$img" "$scn" import "$r" "$bytes" "$check" "$IMGSTORE" --store "$d" import "$file" ;;
        curl+import) measure "$img" "$scn" curl+import "$r" "$bytes" "$check" bash -c \
            'curl -sSf -o "$1" "$2" && exec "$3" --store "$4" import "$1"' _ \
            "$MNT/tmp/$(basename "$file")" "$url" "$IMGSTORE" "$d" ;;
    esac
    fresh
}

fetch_round() { # fetch_round IMG R — every fetch scenario once
    local img=$1 r=$2 in=$MNT/in/$1 what file bytes scn url
    if ((!IMGSTORE_OK)) || ! grep -qw fetch "$LOGS/imgstore-help.log"; then
        for what in aci oci; do record "$img" "fetch-$what" fetch "$r" 0 n/a; done
        return 0
    fi
    command -v curl >/dev/null && [[ -x /usr/sbin/nginx ]] || apt_install curl nginx-light
    trap 'fetch_nginx_stop; cleanup' EXIT
    if fetch_nginx_start plain "$in" "" && fetch_nginx_start 100m "$in" "limit_rate 100m;"; then
        for what in aci oci; do
            file=$in/$img.aci
            [[ $what == oci ]] && file=$in/$img.oci.tar
            bytes=$(size_of "$file")
            scn=fetch-$what
            url=http://127.0.0.1:${FETCH_PORT[plain]}/$(basename "$file")
            in_turn "$r" \
                "fetch_measure $img $scn fetch $r $bytes $file $url" \
                "fetch_measure $img $scn import $r $bytes $file $url" \
                "fetch_measure $img $scn curl+import $r $bytes $file $url"
            url=http://127.0.0.1:${FETCH_PORT[100m]}/$(basename "$file")
            in_turn "$r" \
                "fetch_measure $img $scn-100m fetch $r $bytes $file $url" \
                "fetch_measure $img $scn-100m curl+import $r $bytes $file $url"
        done
    else
        for what in aci oci; do record "$img" "fetch-$what" fetch "$r" 0 failed; done
    fi
    fetch_nginx_stop
    trap cleanup EXIT
}

fetch_report() { # the fetch table, from $RESULTS (markdown on stdout)
    echo "### imgstore fetch (issue 10)"
    echo
    echo "nginx on loopback serving the archive; \`curl+import\` is \`curl -o F URL && imgstore import F\`. Targets: unthrottled, fetch ≤ 1.2 × import of the local file; at \`limit_rate 100m\`, fetch ≤ 0.8 × curl+import; peak RSS ≤ 64 MB."
    echo
    awk -F'\t' -v images="${IMAGES[*]}" "$STATS_AWK"'
        function median(key) { return med(val, key) }
        $1 == "image" || $2 !~ /^fetch-/ { next }
        { key = $1 SUBSEP $2 SUBSEP $3; if ($5 == "ok") { val[key, ++cnt[key]] = $6 + 0; if ($8 + 0 > rss[key]) rss[key] = $8 + 0 } }
        END {
            print "| image | archive | pace | fetch s | import s | curl+import s | fetch ÷ import | fetch ÷ curl+import | fetch peak RSS MiB | within target |"
            print "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
            ni = split(images, imgs, " ")
            for (i = 1; i <= ni; i++) for (a = 1; a <= 2; a++) for (p = 1; p <= 2; p++) {
                what = (a == 1) ? "aci" : "oci"; scn = "fetch-" what (p == 2 ? "-100m" : "")
                f = median(imgs[i] SUBSEP scn SUBSEP "fetch"); im = median(imgs[i] SUBSEP scn SUBSEP "import")
                c = median(imgs[i] SUBSEP scn SUBSEP "curl+import")
                if (f < 0 && c < 0) continue
                r = rss[imgs[i] SUBSEP scn SUBSEP "fetch"]
                ok = "n/a"
                if (f > 0) {
                    if (p == 1 && im > 0) ok = (f <= 1.2 * im) ? "yes" : "no"
                    if (p == 2 && c > 0) ok = (f <= 0.8 * c) ? "yes" : "no"
                    if (r > 64 * 1000) ok = ok " (RSS over 64 MB)"
                }
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", imgs[i], (a == 1 ? "ACI (gzip)" : "oci-archive (gzip)"),
                    (p == 1 ? "unthrottled" : "limit_rate 100m"), fmt(f), (p == 1 ? fmt(im) : "—"), fmt(c),
                    (p == 1 ? ratio(f, im) : "—"), ratio(f, c), (r > 0 ? sprintf("%.0f", r / 1024) : "n/a"), ok
            }
        }' "$RESULTS"
}
# --- end of fetch by URL ----------------------------------------------------------

# === registry scenarios (issue 11): pull, push, re-pull ==========================
# A private docker-registry (Debian's distribution 2.8) on 127.0.0.1, plain HTTP,
# its storage on the bench filesystem, holding each image as bench/IMG:latest
# (pushed once by skopeo from the layout, untimed). Each round, fresh destinations:
#   pull    imgstore pull --jobs PULL_JOBS REF     (store on the bench fs)
#           skopeo copy docker://REF oci:D:latest
#           ctr content fetch --plain-http REF     (private containerd; fetches
#                                                   without unpacking, as imgstore)
#   push    imgstore push KEY REF2                 (the image imported first, untimed,
#                                                   into a fresh store: no blob source
#                                                   to mount from)
#           skopeo copy oci:LAYOUT docker://REF2   (its blob-info cache emptied first,
#                                                   so that it cannot mount either)
#           each tool and round to a repository of its own, so that nothing is there
#   repull  imgstore pull REF again (unchanged tag): hyperfine, warm cache, median
#           (target ≤ 20 ms: one HEAD, no blob, no manifest body)
# The limit of a pull, each round before the tools, from three stages on the
# same bytes: `net`, every blob (and the manifest) read from the registry over
# loopback to /dev/null, one curl per blob, PULL_JOBS at once (page cache
# dropped before: the registry reads its storage cold, as for the pulls);
# `sha256` and `write` of the same blobs from examples/stages.rs (from memory;
# the write is per blob: temp file, fsync, rename, fsync dir, as the store
# does). Limit = max(longest, sum / CORES), as for the imports.
# MB/s is the layout's size (compressed blobs) over the time.
PULL_JOBS=4 # imgstore's default --jobs; the limit's curls run as many at once
REG_PORT=
REG_PID=
REG_DIR=
SKOPEO_BLOB_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb

registry_start() {
    command -v docker-registry >/dev/null || apt_install docker-registry
    command -v hyperfine >/dev/null || apt_install hyperfine
    registry_stop
    REG_DIR=$MNT/registry
    rm -rf "$REG_DIR"
    mkdir -p "$REG_DIR/storage"
    local try i
    for try in 1 2 3 4 5; do
        REG_PORT=$(shuf -i 20000-60000 -n 1)
        ss -ltn | grep -q ":$REG_PORT " && continue
        printf '%s\n' "version: 0.1" "log:" "  level: error" "  accesslog:" "    disabled: true" \
            "storage:" "  filesystem:" "    rootdirectory: $REG_DIR/storage" \
            "  delete:" "    enabled: true" "  maintenance:" "    uploadpurging:" "      enabled: false" \
            "http:" "  addr: 127.0.0.1:$REG_PORT" >"$REG_DIR/config.yml"
        # REGISTRY_* variables would override the config file.
        env $(env | awk -F= '/^REGISTRY_/ { printf "-u %s ", $1 }') \
            docker-registry serve "$REG_DIR/config.yml" >>"$LOGS/registry.log" 2>&1 &
        REG_PID=$!
        for ((i = 0; i < 100; i++)); do
            curl -sf -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && return 0
            kill -0 "$REG_PID" 2>/dev/null || break
            sleep 0.1
        done
        registry_stop
    done
    die "docker-registry did not come up; see $LOGS/registry.log"
}

registry_stop() {
    if [[ -n $REG_PID ]]; then
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
        REG_PID=
    fi
}

registry_seed() { # registry_seed IMG — the layout as bench/IMG:latest
    skopeo --insecure-policy copy -q --dest-tls-verify=false \
        "oci:$MNT/in/$1/layout:latest" "docker://127.0.0.1:$REG_PORT/bench/$1:latest" \
        >"$LOGS/$1.registry-seed.log" 2>&1 ||
        die "cannot push $1 to the bench registry; see $LOGS/$1.registry-seed.log"
}

registry_round() { # registry_round IMG R — the registry scenarios SCENARIOS names
    local img=$1 r=$2 bytes
    local ref=127.0.0.1:$REG_PORT/bench/$img:latest
    bytes=$(size_of "$MNT/in/$img/layout")

    if want pull; then
        registry_pull_limit "$img" "$r" "$bytes" "$ref"
        in_turn "$r" \
            "registry_imgstore_pull $img $r $bytes $ref" \
            "registry_skopeo_pull $img $r $bytes $ref" \
            "registry_ctr_fetch $img $r $bytes $ref"
    fi
    if want push; then registry_push "$img" "$r" "$bytes"; fi
    if want repull; then registry_repull "$img" "$r" "$bytes" "$ref"; fi
}

registry_push() { # registry_push IMG R BYTES — a repository of its own per tool and round
    local img=$1 r=$2 bytes=$3 layout=$MNT/in/$1/layout
    local api=http://127.0.0.1:$REG_PORT/v2
    local accept='Accept: application/vnd.oci.image.manifest.v1+json'
    local dest
    if ((IMGSTORE_OK)); then
        fresh
        local key
        if key=$("$IMGSTORE" --store "$MNT/dest/store" import "$layout" 2>"$LOGS/$img.push.imgstore.r$r.import.log" | tail -n1) &&
            [[ -n $key ]]; then
            dest=bench-push/imgstore-r$r/$img
            measure "$img" push imgstore "$r" "$bytes" \
                "curl -sf -o /dev/null -H '$accept' '$api/$dest/manifests/latest'" \
                "$IMGSTORE" --store "$MNT/dest/store" push "$key" "127.0.0.1:$REG_PORT/$dest:latest"
        else
            record "$img" push imgstore "$r" "$bytes" failed
        fi
        fresh
    else
        record "$img" push imgstore "$r" "$bytes" n/a
    fi
    rm -f "$SKOPEO_BLOB_CACHE"
    dest=bench-push/skopeo-r$r/$img
    measure "$img" push skopeo "$r" "$bytes" \
        "curl -sf -o /dev/null -H '$accept' '$api/$dest/manifests/latest'" \
        skopeo --insecure-policy copy -q --dest-tls-verify=false \
        "oci:$layout:latest" "docker://127.0.0.1:$REG_PORT/$dest:latest"
}

registry_repull() { # registry_repull IMG R BYTES REF — the tag again, unchanged
    local img=$1 r=$2 bytes=$3 ref=$4
    if ((IMGSTORE_OK)); then
        fresh
        local json=$LOGS/$img.repull.imgstore.r$r.json med
        if "$IMGSTORE" --store "$MNT/dest/store" pull "$ref" >"$LOGS/$img.repull.imgstore.r$r.first.log" 2>&1 &&
            hyperfine -N --warmup 3 --runs 30 --export-json "$json" \
                "$IMGSTORE --store $MNT/dest/store pull $ref" >"$LOGS/$img.repull.imgstore.r$r.log" 2>&1; then
            med=$(sed -n 's/.*"median": *\([0-9.eE+-]*\).*/\1/p' "$json" | head -n1)
            record "$img" repull imgstore "$r" "$bytes" ok "$med" "$med" 0 "$(cpu_busy 0.3)"
        else
            record "$img" repull imgstore "$r" "$bytes" failed
        fi
        fresh
    else
        record "$img" repull imgstore "$r" "$bytes" n/a
    fi
}

registry_pull_limit() { # IMG R BYTES REF — the physical limit of the pull of REF
    local img=$1 r=$2 bytes=$3 ref=$4
    if [[ -z $STAGES_BIN ]]; then record "$img" pull limit "$r" "$bytes" n/a; return 0; fi
    local api=http://127.0.0.1:$REG_PORT/v2/${ref#*/} blobs=$MNT/in/$img/layout/blobs/sha256
    api=${api%:*} # bench/IMG, without the tag
    ST=()
    ITEMS=()
    fresh
    local busy dir=$MNT/tmp/pull-limit manifest d files=() total=0
    busy=$(cpu_busy 0.3)
    mkdir -p "$dir"
    manifest=$dir/manifest.json
    if ! curl -sf -o "$manifest" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$api/manifests/latest"; then
        log "    cannot read the manifest of $ref: no pull limit"
        record "$img" pull limit "$r" "$bytes" failed
        return 0
    fi
    # One URL a line: the manifest, then its config and layers (what a pull
    # of a one-platform image reads).
    printf '%s\n' "$api/manifests/latest" >"$dir/urls"
    files=("$manifest")
    for d in $(grep -o 'sha256:[0-9a-f]\{64\}' "$manifest" | sort -u); do
        printf '%s\n' "$api/blobs/$d" >>"$dir/urls"
        files+=("$blobs/${d#sha256:}")
    done
    for d in "${files[@]}"; do total=$((total + $(size_of "$d"))); done
    # The accept headers make the registry serve the manifest as stored.
    run_timed "$LOGS/$img.pull.limit-net.r$r.log" xargs -a "$dir/urls" -P "$PULL_JOBS" -n 1 \
        curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
    if ((T_RC != 0)); then
        log "    curl of the blobs of $ref failed (exit $T_RC): no pull limit  [$LOGS/$img.pull.limit-net.r$r.log]"
        record "$img" pull limit "$r" "$bytes" failed
        return 0
    fi
    ST[pull:net]=$T_CMD
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$img" "$r" pull net "$T_CMD" "$total" >>"$STAGES_TSV"
    run_stages "$img" "$r" pull sha256,write "${files[@]}" || true
    fresh
    local b
    if b=$(bound pull:net pull:sha256 pull:write); then
        record "$img" pull limit "$r" "$bytes" ok "$b" "$b" 0 "$busy"
    else record "$img" pull limit "$r" "$bytes" failed; fi
}

registry_imgstore_pull() { # IMG R BYTES REF
    if ((!IMGSTORE_OK)); then record "$1" pull imgstore "$2" "$3" n/a; return 0; fi
    fresh
    measure "$1" pull imgstore "$2" "$3" "" "$IMGSTORE" --store "$MNT/dest/store" pull --jobs "$PULL_JOBS" "$4"
    fresh
}

registry_skopeo_pull() { # IMG R BYTES REF
    fresh
    measure "$1" pull skopeo "$2" "$3" "test -s '$MNT/dest/oci/index.json'" \
        skopeo --insecure-policy --tmpdir "$MNT/tmp" copy -q --src-tls-verify=false \
        "docker://$4" "oci:$MNT/dest/oci:latest"
    fresh
}

registry_ctr_fetch() { # IMG R BYTES REF
    fresh
    if ! ctrd_start; then record "$1" pull ctr "$2" "$3" failed; return 0; fi
    RSS_PID=$CTRD_PID
    measure "$1" pull ctr "$2" "$3" "ctr --address '$SOCK' -n bench content ls -q | grep -q sha256" \
        ctr --address "$SOCK" -n bench content fetch --plain-http "$4"
    RSS_PID=
    ctrd_stop
    fresh
}
# === end of the registry scenarios ================================================
# --- render (issue 12) ------------------------------------------------------------
# `imgstore render --rootless IMAGE DIR` of the image imported from its OCI
# layout (render), against `umoci raw unpack --rootless` of the same layout,
# both into a new directory on the bench filesystem; then `imgstore render
# --rootless IMAGE` into a tree the store keeps (render-kept: rendered, synced
# and recorded), and the same command once more (render-again: the kept tree
# handed out). The page cache is dropped before each, as everywhere here, so
# render-again is a cold start. --rootless on both sides, so that running as
# root changes neither. The limit: each layer's gunzip, sha256 of its
# decompressed bytes (the diff_id) and a durable write of those bytes
# (examples/stages.rs), every (layer, stage) a stream of its own,
# max(longest, sum / CORES); a lower bound, as one write of a layer's bytes
# costs less than creating the files it holds. MB/s is of the uncompressed
# layers. Targets (issue 12): render <= 0.5 x umoci and <= 1.3 x the limit;
# peak RSS <= 64 MB; render-again <= 20 ms (the command alone, "cmd s").
# containerd is not measured: `ctr` unpacks only as part of an import or pull
# into a snapshotter, not from a store it was not given the image by.
# Everything of this scenario is in this block; round() calls render_round,
# report() calls render_report.

render_bytes() { # render_bytes IN — bytes of the uncompressed layers (the docker-archive's)
    find "$1/docker-members" -maxdepth 1 -type f -regextype egrep -regex '.*/[0-9a-f]{64}\.tar' \
        -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

render_limit() { # render_limit IMG R BYTES — the physical limit of a render
    local img=$1 r=$2 bytes=$3 in=$MNT/in/$1 busy b
    if [[ -z $STAGES_BIN ]]; then record "$img" render limit "$r" 0 n/a; return 0; fi
    fresh
    busy=$(cpu_busy 0.3)
    if run_stages "$img" "$r" render gunzip,sha256-u,write-u "$in/layout/blobs/sha256/"* &&
        b=$(bound items:render); then
        record "$img" render limit "$r" "$bytes" ok "$b" "$b" 0 "$busy"
    else
        record "$img" render limit "$r" 0 failed
    fi
    fresh
}

render_imgstore() { # render_imgstore IMG R BYTES STORE KEY — imgstore render into a new DIR
    local img=$1 r=$2 bytes=$3 store=$4 key=$5 dest=$MNT/dest/rootfs
    fresh
    measure "$img" render imgstore "$r" "$bytes" "test -n \"\$(ls -A '$dest')\"" \
        "$IMGSTORE" --store "$store" render --rootless "$key" "$dest"
    fresh
}

render_umoci() { # render_umoci IMG R BYTES — umoci raw unpack of the layout into a new DIR
    local img=$1 r=$2 bytes=$3 dest=$MNT/dest/rootfs
    fresh
    measure "$img" render umoci "$r" "$bytes" "test -n \"\$(ls -A '$dest')\"" \
        umoci raw unpack --rootless --image "$MNT/in/$img/layout:latest" "$dest"
    fresh
}

render_round() { # render_round IMG R — every render scenario once
    local img=$1 r=$2 bytes key= scn
    # The store lives beside $MNT/dest, which fresh() empties before each command.
    local store=$MNT/render/store
    bytes=$(render_bytes "$MNT/in/$img")
    render_limit "$img" "$r" "$bytes"
    rm -rf "$MNT/render"
    mkdir -p "$MNT/render"
    if ((IMGSTORE_OK)) && grep -qw render "$LOGS/imgstore-help.log"; then
        if key=$("$IMGSTORE" --store "$store" import "$MNT/in/$img/layout" 2>"$LOGS/$img.render.import.r$r.log"); then
            key=${key%%$'\n'*}
        else
            key=
            log "    imgstore import of the layout failed; see $LOGS/$img.render.import.r$r.log"
        fi
    fi
    if [[ -n $key ]]; then
        in_turn "$r" \
            "render_imgstore $img $r $bytes $store $key" \
            "render_umoci $img $r $bytes"
        # One kept tree, listed once: the second render handed out the first's.
        local kept="test \"\$('$IMGSTORE' --store '$store' trees --json | grep -c '\"id\"')\" = 1"
        measure "$img" render-kept imgstore "$r" "$bytes" "$kept" \
            "$IMGSTORE" --store "$store" render --rootless "$key"
        measure "$img" render-again imgstore "$r" "$bytes" "$kept" \
            "$IMGSTORE" --store "$store" render --rootless "$key"
    else
        for scn in render render-kept render-again; do record "$img" "$scn" imgstore "$r" "$bytes" n/a; done
        render_umoci "$img" "$r" "$bytes"
    fi
    rm -rf "$MNT/render"
    sync -f "$MNT" 2>/dev/null || sync
}

render_report() { # the render table, from $RESULTS (markdown on stdout)
    echo "### imgstore render (issue 12)"
    echo
    echo "\`imgstore render --rootless IMAGE DIR\` against \`umoci raw unpack --rootless\` of the same OCI layout; render-kept is \`render IMAGE\` into a tree the store keeps, render-again the same command handing it out (cold cache; its time is the command alone). Targets: render ≤ 0.5 × umoci and ≤ 1.3 × the limit (gunzip, sha256 and a durable write of each layer, on $CORES cores); peak RSS ≤ 64 MB; render-again ≤ 20 ms."
    echo
    awk -F'\t' -v images="${IMAGES[*]}" "$STATS_AWK"'
        $1 == "image" || $2 !~ /^render/ { next }
        { key = $1 SUBSEP $2 SUBSEP $3; if ($5 == "ok") { n = ++cnt[key]; secs[key, n] = $6 + 0; cmd[key, n] = $7 + 0; if ($8 + 0 > rss[key]) rss[key] = $8 + 0; b[$1] = $9 } }
        END {
            print "| image | layers MB | limit s | imgstore s | umoci s | imgstore ÷ umoci | imgstore ÷ limit | peak RSS MiB | render-kept s | render-again cmd s | within targets |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            ni = split(images, imgs, " ")
            for (i = 1; i <= ni; i++) {
                p = imgs[i] SUBSEP
                lm = med(secs, p "render" SUBSEP "limit"); im = med(secs, p "render" SUBSEP "imgstore")
                um = med(secs, p "render" SUBSEP "umoci"); km = med(secs, p "render-kept" SUBSEP "imgstore")
                am = med(cmd, p "render-again" SUBSEP "imgstore")
                if (lm < 0 && im < 0 && um < 0) continue
                r = rss[p "render" SUBSEP "imgstore"]; kr = rss[p "render-kept" SUBSEP "imgstore"]
                if (kr > r) r = kr
                ok = "n/a"
                if (im > 0) {
                    ok = ""
                    if (um > 0 && im > 0.5 * um) ok = ok " umoci"
                    if (lm > 0 && im > 1.3 * lm) ok = ok " limit"
                    if (r > 64 * 1000) ok = ok " RSS"
                    if (am > 0.020) ok = ok " again"
                    ok = (ok == "") ? "yes" : "no:" ok
                }
                printf "| %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", imgs[i], b[imgs[i]] / 1e6,
                    fmt(lm), fmt(im), fmt(um), ratio(im, um), ratio(im, lm), (r > 0 ? sprintf("%.0f", r / 1024) : "n/a"),
                    fmt(km), fmt(am), ok
            }
        }' "$RESULTS"
}
# --- end of render ----------------------------------------------------------------

# --- the report ---------------------------------------------------------------
report() {
    local tmp=$WORK/results.md.tmp
    {
        echo "## imgstore import vs peers and the physical limit"
        echo
        echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`benches/compare.sh${ARGS_GIVEN[*]:+ ${ARGS_GIVEN[*]}}\`:" \
            "$ROUNDS interleaved rounds, median shown."
        echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(free -g | awk '/^Mem/ { print $2 }') GiB RAM, kernel $(uname -r)."
        echo "Filesystem: $FS_NOTE."
        echo "Page cache: ${DROP_NOTE:-dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed command}."
        echo "Tools: $(skopeo --version), umoci $(umoci --version | awk '{ print $3 }'), containerd $(containerd --version | awk '{ print $3 }'); $IMGSTORE_NOTE."
        echo "Limit: examples/stages.rs, max(longest stage, sum of stages / $CORES)."
        echo "Other load: CPU used by other processes when each round started: $(printf '%s%% ' "${BUSY_ROUNDS[@]}")(limit $IDLE_MAX%); $(awk -F'\t' -v m="$IDLE_MAX" 'NR > 1 && $10 != "-" { n++; if ($10 > m) b++ } END { printf "%d of %d timed commands started with more than %d%%", b, n, m }' "$RESULTS")."
        echo
        echo "| image | layers | uncompressed MB | ACI MB | oci-archive MB | docker-archive MB |"
        echo "|---|---:|---:|---:|---:|---:|"
        local img
        for img in "${IMAGES[@]}"; do
            local d=$BUILT/$img
            printf '| %s | %s | %.1f | %.1f | %.1f | %.1f |\n' "$img" \
                "$(tar -tf "$d/$img.docker.tar" | grep -cE '^[0-9a-f]{64}\.tar$')" \
                "$(awk '{ print $1 / 1e6 }' "$d/aci-uncompressed-bytes")" \
                "$(awk -v b="$(size_of "$d/$img.aci")" 'BEGIN { print b / 1e6 }')" \
                "$(awk -v b="$(size_of "$d/$img.oci.tar")" 'BEGIN { print b / 1e6 }')" \
                "$(awk -v b="$(size_of "$d/$img.docker.tar")" 'BEGIN { print b / 1e6 }')"
        done
        echo
        awk -F'\t' -v images="${IMAGES[*]}" -f - "$RESULTS" <<'AWK'
function sortn(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
function median(key,    n, i, v) {
    n = cnt[key]; if (n == 0) return -1
    for (i = 1; i <= n; i++) v[i] = val[key, i]
    sortn(v, n)
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function medcmd(key,    n, i, v) {
    n = cnt[key]; for (i = 1; i <= n; i++) v[i] = cmdv[key, i]
    sortn(v, n)
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function what(scn, tool) {
    if (tool == "limit") return "physical limit"
    if (tool == "disk") return "disk-aware limit: max(limit, copy)"
    if (scn == "aci") return "imgstore import (ACI)"
    if (scn == "docker") return tool == "imgstore" ? "imgstore import" : tool == "skopeo" ? "skopeo copy docker-archive: → oci:" : "ctr images import --no-unpack"
    if (scn == "oci") return tool == "imgstore" ? "imgstore import" : tool == "skopeo" ? "skopeo copy oci-archive: → oci:" : "ctr images import --no-unpack --base-name"
    if (scn == "oci-verify") return "imgstore import --verify-layers"
    if (scn == "warm") return tool == "imgstore" ? "imgstore import LAYOUT (2nd time)" : tool == "skopeo" ? "skopeo copy oci: → existing oci:" : "ctr import of the oci-archive, 2nd time"
    return tool
}
function sname(scn) {
    if (scn == "aci") return "ACI (gzip)"
    if (scn == "docker") return "docker-archive (plain)"
    if (scn == "oci") return "oci-archive (gzip)"
    if (scn == "oci-verify") return "oci-archive, verify layers"
    if (scn == "warm") return "re-import, already stored"
    return scn
}
function pairmed(a, b,    r, n, v) { # median over rounds of a/b, rounds where both ran
    n = 0
    for (r = 1; r <= maxr; r++) if (((a, r) in rv) && ((b, r) in rv) && rv[b, r] > 0) v[++n] = rv[a, r] / rv[b, r]
    if (n == 0) return "n/a"
    sortn(v, n)
    return sprintf("%.2f", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
}
function fmt(x) { return x < 0 ? "n/a" : sprintf("%.3f", x) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "n/a" : sprintf("%.2f", a / b) }
$1 == "image" { next }
{
    key = $1 SUBSEP $2 SUBSEP $3
    seen[key] = 1; bytes[key] = $9; runs[key]++
    if ($5 == "ok") {
        n = ++cnt[key]; val[key, n] = $6 + 0; cmdv[key, n] = $7 + 0; rv[key, $4 + 0] = $6 + 0
        if ($4 + 0 > maxr) maxr = $4 + 0
        if ($8 + 0 > rss[key]) rss[key] = $8 + 0
        if (!(key in mn) || $6 + 0 < mn[key]) mn[key] = $6 + 0
        if (!(key in mx) || $6 + 0 > mx[key]) mx[key] = $6 + 0
    } else if ($5 == "n/a") na[key]++
    else failed[key]++
}
END {
    ns = split("aci docker oci oci-verify warm pull push repull", scns, " ")
    nt = split("limit disk imgstore skopeo ctr", tools, " ")
    ni = split(images, imgs, " ")
    print "| image | scenario | tool | median s | MB/s | min–max s | cmd s (no final sync) | peak RSS MiB | imgstore ÷ this | ok/runs |"
    print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= ni; i++) for (s = 1; s <= ns; s++) {
        ik = imgs[i] SUBSEP scns[s] SUBSEP "imgstore"; im = median(ik)
        for (t = 1; t <= nt; t++) {
            key = imgs[i] SUBSEP scns[s] SUBSEP tools[t]
            if (!(key in seen)) continue
            m = median(key)
            mbps = (m > 0) ? sprintf("%.0f", bytes[key] / 1e6 / m) : "n/a"
            range = (m < 0) ? "n/a" : sprintf("%.3f–%.3f", mn[key], mx[key])
            c = (m < 0 || tools[t] == "limit" || tools[t] == "disk") ? "" : sprintf("%.3f", medcmd(key))
            r = (tools[t] == "limit" || tools[t] == "disk" || m < 0) ? "" : sprintf("%.0f", rss[key] / 1024)
            q = (tools[t] == "imgstore") ? "—" : ratio(im, m)
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", imgs[i], sname(scns[s]), what(scns[s], tools[t]), fmt(m), mbps, range, c, r, q, cnt[key] + 0, runs[key]
        }
    }
    print ""
    print "Budget (DESIGN.md §6): imgstore ≤ 1.3 × limit, and ≤ 0.5 × the fastest peer on the same archive. With --verify-layers only the limit counts: no peer decompresses the layers."
    print ""
    print "Ratios are of the medians; \"per round\" is the median of the ratios within each round (the two ran minutes apart at most), which cancels drift of the disk."
    print ""
    print "| image | scenario | limit s | imgstore s | imgstore ÷ limit | per round | fastest peer | peer s | imgstore ÷ peer | per round | within budget |"
    print "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|"
    for (i = 1; i <= ni; i++) for (s = 1; s <= ns; s++) {
        sc = scns[s]; ps = (sc == "oci-verify") ? "oci" : sc
        if (!((imgs[i] SUBSEP sc SUBSEP "imgstore") in seen)) continue
        lm = median(imgs[i] SUBSEP sc SUBSEP "limit"); im = median(imgs[i] SUBSEP sc SUBSEP "imgstore")
        best = -1; bn = "—"
        for (t = 4; t <= nt; t++) { pm = median(imgs[i] SUBSEP ps SUBSEP tools[t]); if (pm > 0 && (best < 0 || pm < best)) { best = pm; bn = tools[t] } }
        if (sc == "warm") lm = -1
        ok = "n/a"
        if (im > 0) {
            ok = "yes"
            if (lm > 0 && im > 1.3 * lm) ok = "no (limit)"
            # The peers do not decompress: for --verify-layers only the limit is a fair bar.
            if (best > 0 && im > 0.5 * best && sc != "oci-verify") ok = (ok == "yes") ? "no (peer)" : "no (both)"
        }
        ik = imgs[i] SUBSEP sc SUBSEP "imgstore"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", imgs[i], sname(sc), (sc == "warm" ? "—" : fmt(lm)), fmt(im),
            ratio(im, lm), (sc == "warm" ? "n/a" : pairmed(ik, imgs[i] SUBSEP sc SUBSEP "limit")),
            bn, fmt(best), ratio(im, best), (bn == "—" ? "n/a" : pairmed(ik, imgs[i] SUBSEP ps SUBSEP bn)), ok
    }
    print ""
    print "Disk-aware limit, for the scenarios that store what they read: `copy` (examples/stages.rs) reads the members cold while writing them durably, on two threads with no hashing. Its time is in the stage table below; where it is above the two-core limit the disk does not overlap reads with writes, and no import can beat it."
    print ""
    print "| image | scenario | limit s | disk-aware limit s | imgstore s | imgstore ÷ disk-aware limit | per round |"
    print "|---|---|---:|---:|---:|---:|---:|"
    for (i = 1; i <= ni; i++) for (s = 1; s <= ns; s++) {
        sc = scns[s]; dk = imgs[i] SUBSEP sc SUBSEP "disk"
        if (!(dk in seen)) continue
        ik = imgs[i] SUBSEP sc SUBSEP "imgstore"
        lm = median(imgs[i] SUBSEP sc SUBSEP "limit"); dm = median(dk); im = median(ik)
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", imgs[i], sname(sc), fmt(lm), fmt(dm), fmt(im), ratio(im, dm), pairmed(ik, dk)
    }
}
AWK
        echo
        echo "Stages alone (examples/stages.rs, median over rounds):"
        echo
        echo "| image | input | stage | median s | MB/s |"
        echo "|---|---|---|---:|---:|"
        awk -F'\t' -v images="${IMAGES[*]}" -v jobs="$PULL_JOBS" '
            function sortn(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
            $1 == "image" { next }
            { k = $1 SUBSEP $3 SUBSEP $4; if (!(k in n)) order[++no] = k; v[k, ++n[k]] = $5; b[k] = $6 }
            END {
                for (o = 1; o <= no; o++) {
                    k = order[o]; split(k, p, SUBSEP); m = n[k]
                    for (i = 1; i <= m; i++) a[i] = v[k, i]
                    sortn(a, m); med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
                    src = (p[2] == "aci") ? "ACI" : (p[2] == "docker") ? "docker-archive members" : (p[2] == "oci") ? "OCI blobs (compressed)" : (p[2] == "pull") ? "registry blobs (pull; net: curl, " jobs " at once)" : "OCI layers (gzip)"
                    printf "| %s | %s | %s | %.3f | %.0f |\n", p[1], src, p[3], med, (med > 0 ? b[k] / 1e6 / med : 0)
                }
            }' "$STAGES_TSV"
        echo
        if want fetch; then
            fetch_report
            echo
        fi
        if want serve; then serve_report; fi
        if want render; then render_report; echo; fi
        echo "Times include a final \`sync -f\` of the bench filesystem (\"cmd s\" leaves it out). Peak RSS for ctr is the client's plus containerd's (VmHWM, reset before each import). MB = 10^6 bytes; MB/s is the input archive (or layout) size over the median."
    } >"$tmp"
    mv "$tmp" "$REPORT"
}

# --- main ---------------------------------------------------------------------
main() {
    mkdir -p "$WORK" "$LOGS"
    rm -f "$LOGS"/*.log
    ensure_tools
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    local img
    for img in "${IMAGES[@]}"; do
        if [[ $img == small ]]; then build_image small "${SMALL_LAYERS[@]}"; else build_image big "${BIG_LAYERS[@]}"; fi
    done

    prepare_imgstore
    prepare_stages
    mount_bench_fs
    TIMEFILE=$(mktemp "$WORK/time.XXXXXX")

    for img in "${IMAGES[@]}"; do
        mkdir -p "$MNT/in/$img"
        cp -a "$BUILT/$img/layout" "$BUILT/$img/$img.aci" "$BUILT/$img/$img.oci.tar" \
            "$BUILT/$img/$img.docker.tar" "$MNT/in/$img/"
        mkdir -p "$MNT/in/$img/docker-members"
        tar -xf "$BUILT/$img/$img.docker.tar" -C "$MNT/in/$img/docker-members"
    done
    sync
    if want_registry; then # the registry scenarios (issue 11)
        registry_start
        for img in "${IMAGES[@]}"; do registry_seed "$img"; done
    fi

    printf 'image\tscenario\ttool\tround\tstatus\tsecs\tcmd_secs\trss_kb\tbytes\tbusy_pct\n' >"$RESULTS"
    printf 'image\tround\tsource\tstage\tsecs\tbytes\n' >"$STAGES_TSV"
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        for img in "${IMAGES[@]}"; do
            wait_idle
            round "$img" "$r"
        done
    done
    rm -f "$TIMEFILE"

    report
    local keep
    keep=$WORK/runs/$(date -u +%Y%m%d-%H%M%S)
    mkdir -p "$keep"
    cp "$REPORT" "$RESULTS" "$STAGES_TSV" "$keep/"
    echo
    cat "$REPORT"
    echo
    log "written: $REPORT (raw: $RESULTS, $STAGES_TSV; logs: $LOGS; a copy in $keep)"
}

main
