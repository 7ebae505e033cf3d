#!/usr/bin/env bash
# Runs once, as root in the gateway image, before nginx starts (service nginx-setup in
# docker/compose.yaml). Writes into the volume nginx mounts: the secret map from the same
# configuration the pool reads, the shipped http-level file with its upstream pointed at the
# gateway container, the shipped webhook location logging to standard output, and a
# self-signed certificate for loopback.
set -euo pipefail
out=/generated
telegram-gateway --env-file /dev/null --print-nginx-secret-map >"$out/secrets.map"
sed -e 's#unix:/run/telegram-gateway/fcgi.sock#gateway:9000#' \
    -e 's#/etc/nginx/telegram-gateway/secrets.map#/etc/nginx/telegram-gateway/generated/secrets.map#' \
    /setup/http.conf >"$out/http.conf"
# The webhook's JSON access log to the container's standard output (docker logs).
sed -e 's#access_log /var/log/nginx/telegram-gateway.access.log#access_log /dev/stdout#' \
    /setup/location.conf >"$out/location.conf"
grep -q 'access_log /dev/stdout telegram_gateway;' "$out/location.conf"
if [ ! -s "$out/cert.pem" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssl >/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
fi
chmod 0644 "$out/cert.pem" "$out/http.conf" "$out/location.conf" "$out/secrets.map"
chmod 0600 "$out/key.pem"  # read by nginx's master process, which runs as root
