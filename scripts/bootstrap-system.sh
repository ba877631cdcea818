#!/usr/bin/env bash
# Installs, through apt-get, the system packages the project needs on a fresh Debian:
# venv support, a C compiler and the Python and OpenSSL headers (uWSGI with logcrypto is
# built from source in the virtual environment), and the openssl command (the bf-cbc test
# vectors), and rsyslog (bench/peers.py measures the collector beside it; a test runs it
# with a config of its own, never the system's), and chromium (the web console's browser
# tests, driven by Playwright). Installs nothing that is already there.
set -euo pipefail
PYTHON=${1:-python3}

missing=()
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3-venv")
include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$include/Python.h" ] || missing+=("python3-dev")
command -v cc >/dev/null 2>&1 || missing+=("build-essential")
command -v make >/dev/null 2>&1 || missing+=("make")
[ -f /usr/include/openssl/evp.h ] || missing+=("libssl-dev")
command -v openssl >/dev/null 2>&1 || missing+=("openssl")
# uWSGI's build looks for these and links them when found; a missing one only removes a
# feature, so they are installed only for a complete build.
[ -f /usr/include/zlib.h ] || missing+=("zlib1g-dev")
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || missing+=("rsyslog")
# rsyslog's TLS driver: tests/e2e/test_syslog_rsyslog.py forwards over TLS with it.
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || missing+=("rsyslog-openssl")
[ -x /usr/bin/chromium ] || missing+=("chromium")  # the web console's browser tests
# A real Alertmanager for the alertmanager: notifier's tests (tests/e2e/test_alertmanager.py
# starts its own on a loopback port with its own config; the packaged service is not used).
[ -x /usr/bin/prometheus-alertmanager ] || missing+=("prometheus-alertmanager")

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${missing[*]} (install them; no apt-get here)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
