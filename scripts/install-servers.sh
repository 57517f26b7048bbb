#!/usr/bin/env bash
# Installs the real servers the integration tests run: Debian's rabbitmq-server and
# PostgreSQL. Idempotent: installs only what is missing, and never leaves a system
# RabbitMQ node or PostgreSQL cluster running (the tests start their own, on free
# ports, from temp directories; see tests/support/servers.py).
# Needs root or sudo when something is missing.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
POLICY=/usr/sbin/policy-rc.d

say() { printf 'install-servers: %s\n' "$*"; }

pg_ctl_path() { compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | sort -V | tail -n 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        SUDO_MISSING=1
    fi
    SUDO=(sudo)
fi

packages=()
if [ -x "$RABBITMQ_SERVER" ]; then
    say "RabbitMQ present: $RABBITMQ_SERVER"
else
    say "RabbitMQ missing: will install rabbitmq-server"
    packages+=(rabbitmq-server)
fi
if pg="$(pg_ctl_path)" && [ -n "$pg" ]; then
    say "PostgreSQL present: $pg"
else
    say "PostgreSQL missing: will install postgresql"
    packages+=(postgresql)
fi
# the attachments' virus scan (tests start a private clamd with their own signatures)
if [ -x /usr/sbin/clamd ]; then
    say "clamd present: /usr/sbin/clamd"
else
    say "clamd missing: will install clamav-daemon"
    packages+=(clamav-daemon)
fi
# the console's browser tests (tests/browser): Playwright drives Debian's chromium, never a download
if [ -x /usr/bin/chromium ]; then
    say "chromium present: /usr/bin/chromium"
else
    say "chromium missing: will install chromium"
    packages+=(chromium)
fi

if [ "${#packages[@]}" -eq 0 ]; then
    say "nothing to install"
    exit 0
fi

if [ -n "${SUDO_MISSING:-}" ]; then
    say "error: need root or sudo to install ${packages[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "error: no apt-get; install ${packages[*]} by hand (Debian/Ubuntu packages expected)" >&2
    exit 1
fi

# Stop apt's maintainer scripts from starting a system node or cluster:
# invoke-rc.d asks policy-rc.d, and 101 means "action forbidden".
created_policy=0
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        say "removing $POLICY"
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ -e "$POLICY" ]; then
    say "keeping existing $POLICY"
else
    say "writing $POLICY (exit 101) so apt does not start services"
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    created_policy=1
fi

say "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "apt-get install ${packages[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"

# Belt and braces: if a maintainer script started a system server anyway, stop it.
if command -v pg_lsclusters >/dev/null 2>&1; then
    { pg_lsclusters --no-header 2>/dev/null || true; } | while read -r ver name _port status _rest; do
        if [ "$status" = online ]; then
            say "stopping system PostgreSQL cluster $ver/$name"
            "${SUDO[@]}" pg_ctlcluster "$ver" "$name" stop || true
        fi
    done
fi
if id rabbitmq >/dev/null 2>&1; then
    # The rabbitmq user was made by the package for its system node; the tests run
    # their nodes as the invoking user, so anything of this user is the system node.
    system_pids="$(pgrep -u rabbitmq || true)"
    if [ -n "$system_pids" ]; then
        say "stopping the system RabbitMQ node: pids" $system_pids
        # shellcheck disable=SC2086 # one argument per pid
        "${SUDO[@]}" kill -TERM $system_pids 2>/dev/null || true
        for _ in $(seq 1 30); do
            pgrep -u rabbitmq >/dev/null 2>&1 || break
            sleep 1
        done
        system_pids="$(pgrep -u rabbitmq || true)"
        # shellcheck disable=SC2086
        [ -z "$system_pids" ] || "${SUDO[@]}" kill -KILL $system_pids 2>/dev/null || true
    fi
fi

[ -x "$RABBITMQ_SERVER" ] || { say "error: $RABBITMQ_SERVER still missing" >&2; exit 1; }
pg="$(pg_ctl_path)" && [ -n "$pg" ] || { say "error: pg_ctl still missing" >&2; exit 1; }
say "done: $RABBITMQ_SERVER, $pg"
