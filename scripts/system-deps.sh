#!/usr/bin/env bash
# Install the Debian packages the test suite talks to (real peers, not mocks).
#   socat         pseudo-terminal pairs for Modbus RTU tests
#   mbpoll        an independent Modbus master that cross-checks `scada poll`
#   redis-server  the Redis Streams bus of the collector/central roles
#   influxdb      InfluxDB 1.x, the benchmark peer of the historian
#   chromium      headless browser tests of the HMI
#   prometheus    its promtool lints a real scrape of /metrics (`promtool check metrics`)
#   fonts-noto-cjk, fonts-dejavu-core  CJK and Cyrillic glyphs in Chromium, PDFs and xlsx (issue 20)
#   poppler-utils pdftotext reads the text of a Chinese PDF receipt back (tests/i18n)
set -euo pipefail
pkgs=(socat mbpoll redis-server influxdb chromium chromium-driver prometheus fonts-noto-cjk fonts-dejavu-core poppler-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${pkgs[*]}"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
