#!/usr/bin/env bash
# Installs what the browser tests (tests/browser/) need from Debian: Chromium, its driver and
# fonts. Idempotent and quiet: does nothing when they are already there. Needs root or sudo.
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-liberation fonts-dejavu-core)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi

fail() {
  echo "install_browser.sh: cannot install ${missing[*]}: $1" >&2
  echo "install_browser.sh: install them by hand (Debian/Ubuntu: apt-get install ${missing[*]})," >&2
  echo "install_browser.sh: or skip the browser tests locally with: pytest -m 'not browser'" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (this script knows Debian and Ubuntu only)"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  fail "not root, and sudo is not available without a password"
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${SUDO[@]}" apt-get update -qq -o DPkg::Lock::Timeout=300 >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
"${SUDO[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; fail "apt-get install failed"; }
[ -x /usr/bin/chromium ] || fail "apt-get finished but /usr/bin/chromium is missing"
echo "install_browser.sh: installed ${missing[*]}"
