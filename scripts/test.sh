#!/usr/bin/env bash
# Runs the tests with what they need: installs, if missing, the Debian
# packages whose programs the tests drive (they never skip for a missing
# tool), then `cargo test --workspace "$@"` (testkit's own tests too). The tests start their own servers on
# 127.0.0.1 with private config; this script starts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    skopeo          # interop: copies to and from OCI layouts and registries
    umoci           # interop: builds and reads OCI layouts
    nginx-light     # testkit::Nginx: fetch by URL, HTTP and HTTPS
    docker-registry # testkit::Registry: pull and push
    containerd      # testkit::Containerd: a peer's content store (ctr)
    apache2-utils   # htpasswd, for testkit::Registry::with_htpasswd
    bsdutils        # script: a pty for the progress-bar tests (tests/registry/progress.rs)
    podman          # interop: `podman load` of an export names the image right
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "error: installing ${missing[*]} needs root or sudo" >&2
        exit 1
    fi
    echo "installing ${missing[*]}" >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --workspace "$@"
