#!/usr/bin/env bash
# Installs what builds and runs the hub's container image without a Docker engine: Debian's
# podman, runc (crun, podman's usual runtime, fails on these machines) and mmdebstrap (makes the
# base image from Debian packages, as no container registry is reachable). Idempotent: installs
# only what is missing. Needs root or sudo when something is missing.
set -euo pipefail

say() { printf 'install-image-tools: %s\n' "$*"; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -x /usr/sbin/runc ] || missing+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "${#missing[@]}" -eq 0 ]; then
    say "podman, runc and mmdebstrap present"
    exit 0
fi

# outside CI a machine that cannot install them still runs the tests: the container test skips
cannot() {
    if [ "${CI:-}" = "true" ]; then say "error: $*" >&2; exit 1; fi
    say "warning: $* (the container test will skip)" >&2
    exit 0
}
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || cannot "need root or sudo to install ${missing[*]}"
    SUDO=(sudo)
fi
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get; install ${missing[*]} by hand"

say "apt-get install ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
# no recommends: they bring crun, which would then be podman's default runtime
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
say "done: $(podman --version), $(/usr/sbin/runc --version | head -n 1)"
