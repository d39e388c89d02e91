#!/usr/bin/env bash
# Builds the small, reproducible ACI fixtures kept in tests/data/:
#   hello.aci       gzip-compressed appc image example.com/hello, version 1.0.0
#   hello-2.0.0.aci the same name, version 2.0.0
# Re-run it after changing the fixtures; the output is byte-identical each time
# (fixed mtimes, owners and order, gzip without a timestamp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { # name version greeting output
    local dir="$work/$2"
    mkdir -p "$dir/rootfs/etc" "$dir/rootfs/bin"
    cat > "$dir/manifest" <<JSON
{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "$1",
  "labels": [
    {"name": "version", "value": "$2"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {
    "exec": ["/bin/hello"],
    "user": "0",
    "group": "0"
  }
}
JSON
    printf '%s\n' "$3" > "$dir/rootfs/etc/greeting"
    printf '#!/bin/sh\ncat /etc/greeting\n' > "$dir/rootfs/bin/hello"
    chmod 755 "$dir/rootfs/bin/hello"
    tar --sort=name --mtime='2026-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$dir" -cf - manifest rootfs | gzip -n -9 > "$4"
}

build example.com/hello 1.0.0 "hello, world" "$here/hello.aci"
build example.com/hello 2.0.0 "hello again, world" "$here/hello-2.0.0.aci"
ls -l "$here"/*.aci
