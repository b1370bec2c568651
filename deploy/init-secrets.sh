#!/usr/bin/env bash
# Create the secrets docker-compose.hub.yml reads, once, on the hub host:
#   deploy/hub.env                  REDIS_PASSWORD, REDIS_LIMITS_PASSWORD, MQTT_HUB_PASSWORD,
#                                   GRAFANA_ADMIN_PASSWORD, PUBLIC_HOSTNAME
#   deploy/secrets/api_keys.txt     API_KEYS file (one `name:key[:scopes]` per line: `default`, `ops` with
#                                   fleet:admin), mounted as a Docker secret
#   deploy/secrets/mosquitto.passwd broker users: `hub` and one per edge id (add `observer` by hand if needed)
#   deploy/secrets/dynamic-security.json  the broker's users and rights, rebuilt from mosquitto.passwd on
#                                   every run (deploy/mosquitto/dynsec.py; needs python3)
#   deploy/secrets/edges/<id>.env   what each edge needs in its deploy/edge.env (EDGE_ID, MQTT_URL)
#   deploy/secrets/htpasswd         nginx basic auth for /prometheus/ (user `admin`)
#   deploy/secrets/tls/server.{crt,key}  a self-signed certificate, until you install a real one
#
#   deploy/init-secrets.sh hub.example.com edge-door edge-lobby
#
# Existing files are kept (re-run it to add edges, and after an upgrade: a password a new release needs is
# added to an existing hub.env). Needs openssl, and mosquitto_passwd or docker.
set -euo pipefail
umask 077
cd "$(dirname "$0")"
host=${1:?usage: init-secrets.sh PUBLIC_HOSTNAME [EDGE_ID...]}
shift
secrets=secrets
mkdir -p "$secrets/tls" "$secrets/edges"

random() { openssl rand -hex 24; }

passwd_tool() {  # mosquitto_passwd from the host, else from the broker's image
  if command -v mosquitto_passwd >/dev/null; then
    mosquitto_passwd "$@"
  else
    docker run --rm -v "$PWD/$secrets:/s" eclipse-mosquitto:2.0.20 mosquitto_passwd "${@/#$secrets\//\/s\/}"
  fi
}

if [ ! -f hub.env ]; then
  cat > hub.env <<ENV
PUBLIC_HOSTNAME=$host
REDIS_PASSWORD=$(random)
MQTT_HUB_PASSWORD=$(random)
GRAFANA_ADMIN_PASSWORD=$(random)
ENV
fi
# Passwords a later release needs, added to an existing hub.env (nothing in it is changed).
grep -q '^REDIS_LIMITS_PASSWORD=' hub.env || printf 'REDIS_LIMITS_PASSWORD=%s\n' "$(random)" >> hub.env
# shellcheck disable=SC1091
. ./hub.env

# A client key (no scopes written: detect + fleet:read) and an operator key for fleet control.
[ -f "$secrets/api_keys.txt" ] || printf 'default:%s\nops:%s:fleet:admin\n' "$(random)" "$(random)" > "$secrets/api_keys.txt"

[ -f "$secrets/mosquitto.passwd" ] || : > "$secrets/mosquitto.passwd"
grep -q '^hub:' "$secrets/mosquitto.passwd" || passwd_tool -b "$secrets/mosquitto.passwd" hub "$MQTT_HUB_PASSWORD"
for edge in "$@"; do
  case $edge in *[+#/\ ]*|[$]*|''|hub|observer) echo "bad edge id: $edge" >&2; exit 2;; esac
  if ! grep -q "^$edge:" "$secrets/mosquitto.passwd"; then
    pw=$(random)
    passwd_tool -b "$secrets/mosquitto.passwd" "$edge" "$pw"
    printf 'EDGE_ID=%s\nMQTT_URL=mqtts://%s:%s@%s:8883\n' "$edge" "$edge" "$pw" "$host" > "$secrets/edges/$edge.env"
  fi
done
python3 mosquitto/dynsec.py "$secrets/mosquitto.passwd" > "$secrets/dynamic-security.json.tmp"
mv "$secrets/dynamic-security.json.tmp" "$secrets/dynamic-security.json"
# The broker runs as uid 1883 and must read its users (password hashes only).
chmod 644 "$secrets/mosquitto.passwd" "$secrets/dynamic-security.json"

if [ ! -f "$secrets/htpasswd" ]; then
  pw=$(random)
  printf 'admin:%s\n' "$(openssl passwd -apr1 "$pw")" > "$secrets/htpasswd"
  echo "Prometheus (https://$host/prometheus/): user admin, password $pw"
fi

if [ ! -f "$secrets/tls/server.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$host" \
    -addext "subjectAltName=DNS:$host" \
    -keyout "$secrets/tls/server.key" -out "$secrets/tls/server.crt" 2>/dev/null
  # The broker reads them as its own unprivileged user inside its container.
  chmod 755 "$secrets/tls"
  chmod 644 "$secrets/tls/server.crt" "$secrets/tls/server.key"
  echo "self-signed certificate for $host written; replace deploy/secrets/tls/server.{crt,key} with a real one"
fi
echo "secrets ready in deploy/secrets and deploy/hub.env"
