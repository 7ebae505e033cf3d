# Shared helpers for scripts/*: sourced, never run.
# shellcheck shell=bash

log() { printf '%s\n' "$*" >&2; }
fatal() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Debian packages the gateway builds, runs and is tested with.
GATEWAY_PACKAGES=(
    nginx redis-server spawn-fcgi
    libfcgi-dev libhiredis-dev libcurl4-openssl-dev
    wrk openssl curl ca-certificates
)

# Only the tests need these: the deployment-file checks parse docker/compose.yaml and verify
# the systemd units; promtool (prometheus) checks the metrics and alert rules; logrotate runs
# the shipped rotation file; cc builds the clock scripts/loadtest gives wrk.
TEST_PACKAGES=(python3-yaml systemd prometheus logrotate gcc libc6-dev)

# Installs whichever of the packages is missing: `apt-get update` once, then one install.
ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Package scripts must not start system services we did not ask for (nginx on port 80,
    # redis on 6379, prometheus on 9090): a policy-rc.d that refuses every start while apt runs
    # (deb-systemd-invoke and invoke-rc.d both ask it; RUNLEVEL=1 covers hosts without one), and
    # the units the new packages enabled are disabled again. A policy-rc.d already there (as in
    # container images) is left alone.
    local policy=/usr/sbin/policy-rc.d placed=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# placed by telegram-gateway scripts/lib.sh during apt-get install\nexit 101\n' |
            "${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy" && placed=1
    fi
    local status=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ "$placed" -eq 1 ] && "${sudo[@]}" rm -f "$policy"
    [ "$status" -eq 0 ] || return "$status"
    local units=()
    for package in "${missing[@]}"; do
        while read -r unit; do units+=("${unit##*/}"); done < <(dpkg -L "$package" 2>/dev/null |
            grep -E '^/(usr/)?lib/systemd/system/[^/]+\.service$' || true)
    done
    if [ "${#units[@]}" -gt 0 ] && command -v systemctl >/dev/null; then
        for unit in "${units[@]}"; do
            systemctl --quiet is-enabled "$unit" 2>/dev/null || continue
            "${sudo[@]}" systemctl --quiet disable "$unit" >/dev/null 2>&1 || true
            log "not enabled at boot: $unit (installed for the gateway's scripts only)"
        done
    fi
}

# Package lists for apt-cache (the deployment checks look packages up), fetched once if absent.
ensure_package_lists() {
    compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
}

# A self-signed certificate for loopback, made once.
ensure_certificate() {
    local dir="$1"
    [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && return 0
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    chmod 600 "$dir/key.pem"
}

# True when the pid file names a live process.
pid_alive() {
    local file="$1" pid
    [ -s "$file" ] || return 1
    while read -r pid || [ -n "$pid" ]; do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
    done <"$file"
    return 1
}

# Stops every pid listed in the file (TERM, then KILL after a grace period) and removes it.
stop_pids() {
    local file="$1" grace="${2:-10}" pid i
    [ -f "$file" ] || return 0
    local pids=()
    while read -r pid || [ -n "$pid" ]; do [ -n "$pid" ] && pids+=("$pid"); done <"$file"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < grace * 10; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
    rm -f "$file"
}
