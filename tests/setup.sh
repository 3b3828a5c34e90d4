#!/usr/bin/env bash
# Installs what the tests and the demo need, idempotently: Debian packages (only when a command
# is missing), a Python venv, and the Apache Kafka jars. `setup.sh stack` installs only what the
# local stack needs (moto; what `make demo` uses); `setup.sh` adds the template and Lambda build
# tools (cfn-lint, aws-sam-cli, cargo-lambda).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${STANDBY_CACHE:-$HOME/.cache/standby-events}"
kafka_libs="${KAFKA_LIBS:-$cache/kafka-libs}"

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# command -> Debian package providing it
missing=()
for pair in cmake:cmake perl:perl make:make openssl:openssl java:openjdk-17-jre-headless mvn:maven python3:python3 curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

# Python tools, each list reinstalled only when its file changes.
venv="$root/.venv"
lists=(stack)
[ "${1:-all}" = stack ] || lists+=(tools)
for list in "${lists[@]}"; do
  file="$root/tests/requirements-$list.txt"
  stamp="$venv/.requirements-$list.sha256"
  want="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python tools ($list) into .venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$file"
    echo "$want" > "$stamp"
  fi
done

# Kafka jars, resolved again only when tests/kafka/pom.xml changes.
stamp="$kafka_libs/.pom.sha256"
want="$(sha256sum "$root/tests/kafka/pom.xml" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: resolving Apache Kafka jars into $kafka_libs"
  rm -rf "$kafka_libs" && mkdir -p "$kafka_libs"
  (cd "$root/tests/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$kafka_libs")
  echo "$want" > "$stamp"
fi
echo "setup: ok"
