#!/usr/bin/env bash
# install.sh BINARY DESTDIR PREFIX SYSCONFDIR UNITDIR — what `make install` does.
#
# Why a script: the installed config differs from the repository's (paths relative
# to /etc/dpsd, state in /var/lib/dpsd), an existing config must never be
# overwritten, and the dpsd user is created only on a live system (no DESTDIR).
set -euo pipefail
binary=$1 destdir=$2 prefix=$3 sysconfdir=$4 unitdir=$5
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
etc=$destdir$sysconfdir/dpsd

install -Dm755 "$binary" "$destdir$prefix/bin/dpsd"
sed "s|/usr/local/bin/dpsd|$prefix/bin/dpsd|; s|/etc/dpsd/|$sysconfdir/dpsd/|" \
  "$root/systemd/dpsd.service" | install -Dm644 /dev/stdin "$destdir$unitdir/dpsd.service"
install -Dm644 "$root/systemd/dpsd.sysusers" "$destdir$prefix/lib/sysusers.d/dpsd.conf"
install -d "$destdir$prefix/share/doc/dpsd"
install -m644 "$root/README.md" "$root"/docs/*.md "$destdir$prefix/share/doc/dpsd/"

install -d "$etc/jobs.d" "$etc/workers.d"
if [[ ! -e $etc/dpsd.yaml ]]; then
  sed 's|^state_dir: .*|state_dir: /var/lib/dpsd|; s|^jobs_dir: \.\./|jobs_dir: |; s|^workers_dir: \.\./|workers_dir: |' \
    "$root/etc/dpsd.yaml" | install -m640 /dev/stdin "$etc/dpsd.yaml"
fi
if [[ ! -e $etc/dpsd.production.yaml ]]; then
  install -m640 "$root/etc/dpsd.production.yaml" "$etc/dpsd.production.yaml"
fi
for dir in jobs.d workers.d; do
  for file in "$root/$dir"/*.yaml; do
    [[ -e $file && ! -e $etc/$dir/$(basename "$file") ]] && install -m644 "$file" "$etc/$dir/"
  done
done

if [[ -z $destdir ]]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "$prefix/lib/sysusers.d/dpsd.conf"
  elif ! id dpsd >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/dpsd --shell /usr/sbin/nologin dpsd
  fi
  chgrp dpsd "$etc/dpsd.yaml" "$etc/dpsd.production.yaml"
  if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload 2>/dev/null || true # no running systemd (a container): fine
  fi
  echo "installed; start with: systemctl enable --now dpsd"
fi
