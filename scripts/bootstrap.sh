#!/usr/bin/env bash
# The fresh-machine start (README, "Quick start"): on Debian or Ubuntu with only Node.js and npm,
# installs what is missing, then runs the service or the tests.
#
#   bash scripts/bootstrap.sh dev      # install, then `deno task dev` (a throwaway Redis when none answers)
#   bash scripts/bootstrap.sh test     # install, then `deno install --frozen` and `deno task test`
#   bash scripts/bootstrap.sh install  # install only (.ci/run uses this)
#
# Installs: Deno $DENO_VERSION through npm when deno is missing or another version (into npm's
# global prefix; its bin directory is put on PATH for the commands run here), and redis-server and
# openssl through apt-get (as root, or with sudo) when missing.
set -Eeuo pipefail

DENO_VERSION="2.9.6" # keep in step with the Dockerfile's DENO_VERSION and the README
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "bootstrap: $*" >&2; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root for: $* (run as root, or install sudo)"
    return 1
  fi
}

install_deno() {
  local installed
  installed="$(deno --version 2>/dev/null | sed -nE 's/^deno ([0-9.]+).*/\1/p' || true)"
  if [[ "$installed" == "$DENO_VERSION" ]]; then
    return 0
  fi
  log "deno ${installed:-not found}; installing deno@$DENO_VERSION with npm (a warning about install scripts is expected)"
  if ! command -v npm >/dev/null 2>&1; then
    log "npm is not available: install Node.js and npm first (apt-get install -y nodejs npm)"
    return 1
  fi
  npm install -g "deno@$DENO_VERSION"
  # The global bin directory may not be on PATH (a user-level prefix), or come after another deno.
  export PATH="$(npm prefix -g)/bin:$PATH"
  hash -r
  deno --version >/dev/null || {
    log "deno was installed but does not run"
    return 1
  }
}

install_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  log "installing ${missing[*]} with apt-get"
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends "${missing[@]}"
  hash -r
  # The Debian package may start a system Redis on 6379. The tests never use it, and `deno task
  # dev` starts its own only when none answers: stop the one just installed (best effort).
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
      as_root systemctl stop redis-server || true
    elif command -v service >/dev/null 2>&1; then
      as_root service redis-server stop >/dev/null 2>&1 || true
    fi
  fi
}

command="${1:-}"
case "$command" in
  install | dev | test) ;;
  *)
    echo "usage: bash scripts/bootstrap.sh dev|test|install" >&2
    exit 64
    ;;
esac

export DENO_NO_UPDATE_CHECK=1
install_deno
install_packages
log "deno $(deno --version | head -n 1 | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f3)"

case "$command" in
  install) ;;
  dev) exec deno task dev ;;
  test)
    deno install --frozen
    exec deno task test
    ;;
esac
