#!/usr/bin/env bash
# Peak memory of `fsck` on a store of 1,000,000 blobs (DESIGN.md §6: memory
# stays bounded whatever the store's size), for one or more imgstore
# binaries side by side.
#
#   benches/fsck-scale.sh [--blobs N] [--dir DIR] IMGSTORE...
#
# The store is built once in DIR (default /var/tmp/imgstore-fsck-scale):
# the schema comes from the binary itself (`imgstore images` creates it),
# then N small blobs whose files hold the bytes their names are the digest
# of, each pinned once, are written straight into the index and the tree.
# Every check must come back clean, so the figure is the walk's memory, not
# a list of problems. Each binary runs `fsck --json` on the same store with
# a dropped page cache (when root), under GNU time for its peak RSS.
set -euo pipefail

blobs=1000000
dir=/var/tmp/imgstore-fsck-scale
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --blobs) blobs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) bins+=("$1"); shift ;;
    esac
done
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 [--blobs N] [--dir DIR] IMGSTORE..." >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (Debian package time)" >&2; exit 1; }

store=$dir/store-$blobs
if [ ! -e "$store/.built" ]; then
    rm -rf "$store"
    mkdir -p "$store"
    "${bins[0]}" --store "$store" images >/dev/null
    python3 - "$store" "$blobs" <<'EOF'
import hashlib, os, sqlite3, sys
store, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(os.path.join(store, "index.db"))
db.execute("PRAGMA synchronous=OFF")
rows, edges = [], []
for i in range(n):
    data = b"fsck scale blob %d" % i
    hexd = hashlib.sha256(data).hexdigest()
    shard = os.path.join(store, "blobs", "sha256", hexd[:2])
    if i < 256 or not os.path.isdir(shard):
        os.makedirs(shard, exist_ok=True)
    with open(os.path.join(shard, hexd), "wb") as f:
        f.write(data)
    rows.append((i + 1, "sha256:" + hexd, len(data), 0))
    edges.append((4, 0, i + 1, 1))
    if len(rows) == 50000:
        db.executemany("INSERT INTO blobs (id, digest, size, created_at) VALUES (?,?,?,?)", rows)
        db.executemany("INSERT INTO refs (owner_kind, owner, blob_id, n) VALUES (?,?,?,?)", edges)
        rows, edges = [], []
db.executemany("INSERT INTO blobs (id, digest, size, created_at) VALUES (?,?,?,?)", rows)
db.executemany("INSERT INTO refs (owner_kind, owner, blob_id, n) VALUES (?,?,?,?)", edges)
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
EOF
    touch "$store/.built"
fi

printf '%-40s %10s %12s %8s\n' binary "wall s" "peak RSS kB" clean
for bin in "${bins[@]}"; do
    sync
    if [ "$(id -u)" = 0 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
    out=$(mktemp)
    /usr/bin/time -f '%e %M' -o "$out.time" "$bin" --store "$store" fsck --json >"$out" || true
    read -r wall rss <"$out.time"
    clean=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("yes" if not r["problems"] and r["blobs_checked"]>0 else "NO")' "$out")
    printf '%-40s %10s %12s %8s\n' "$bin" "$wall" "$rss" "$clean"
    rm -f "$out" "$out.time"
done
