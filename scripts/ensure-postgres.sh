#!/usr/bin/env bash
# Succeed when a PostgreSQL server answers on loopback, starting the local cluster if it is installed but down.
set -u
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ready && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 20); do ready && exit 0; sleep 0.5; done
fi
exit 1
