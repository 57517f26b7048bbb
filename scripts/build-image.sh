#!/usr/bin/env bash
# Builds the hub's image (deploy/Containerfile) with podman and tags it council-hub:dev.
# With no container registry in reach, the base is made here from Debian packages: mmdebstrap
# writes a minimal bookworm with python3 and `podman import` turns it into
# localhost/debian-python:bookworm, once (kept while `podman image exists` says so).
# Dependencies come from requirements/runtime.txt with their hashes; the image's CycloneDX bill
# of materials is copied to build/sbom.cdx.json (SBOM=... to put it elsewhere).
#   IMAGE=council-hub:dev  BASE_IMAGE=localhost/debian-python:bookworm  (override either)
#   BASE_IMAGE=python:3.11-slim bash scripts/build-image.sh   where a registry is reachable
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE="${IMAGE:-council-hub:dev}"
LOCAL_BASE=localhost/debian-python:bookworm
BASE_IMAGE="${BASE_IMAGE:-$LOCAL_BASE}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# crun fails on these machines; the ulimits keep podman's defaults (above the hard limits of
# some sandboxes) out of the way; host networking needs no CNI set-up
PODMAN=(podman --runtime /usr/sbin/runc)
RUN_OPTS=(--network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

say() { printf 'build-image: %s\n' "$*"; }

build_local_base() {
    local tarball
    tarball="$(mktemp -d)/base.tar"
    trap 'rm -rf "$(dirname "$tarball")"' RETURN
    say "making $LOCAL_BASE from Debian packages (mmdebstrap, about a minute)"
    # essential + python3 only: no apt, no perl (the merged-usr hook spares usrmerge and its perl),
    # no docs; tzdata for zoneinfo, ca-certificates for TLS to brokers and databases
    mmdebstrap --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include=python3,python3-venv,ca-certificates,tzdata \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        bookworm "$tarball" \
        "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
        "deb $SECURITY_MIRROR bookworm-security main"
    "${PODMAN[@]}" import --change 'CMD ["/usr/bin/python3"]' "$tarball" "$LOCAL_BASE" >/dev/null
}

if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
    if "${PODMAN[@]}" image exists "$LOCAL_BASE"; then
        say "reusing $LOCAL_BASE"
    else
        build_local_base
    fi
fi

# pip inside the build trusts what this machine trusts (a TLS-inspecting proxy's CA, say): the
# bundle is a build secret, mounted for the pip steps only and never stored in the image
BUILD_OPTS=()
CA_BUNDLE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[ -s "$CA_BUNDLE" ] && BUILD_OPTS+=(--secret "id=ca-certificates,src=$CA_BUNDLE")

say "building $IMAGE from $BASE_IMAGE"
start=$(date +%s)
"${PODMAN[@]}" build "${RUN_OPTS[@]}" --pull=never "${BUILD_OPTS[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f deploy/Containerfile -t "$IMAGE" .
# the CycloneDX bill of materials the build wrote into the image (/opt/hub/sbom.cdx.json), next to it
SBOM="${SBOM:-build/sbom.cdx.json}"
mkdir -p "$(dirname "$SBOM")"
"${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" --entrypoint cat "$IMAGE" /opt/hub/sbom.cdx.json > "$SBOM.tmp"
mv "$SBOM.tmp" "$SBOM"
say "bill of materials: $SBOM ($(grep -c '"bom-ref"' "$SBOM") entries, CycloneDX)"
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
