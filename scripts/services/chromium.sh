# Headless Chromium (Debian's package) for the status-page test. Not a
# service: nothing runs until a test starts it.

chromium_up() {
  apt_install chromium
  echo "export RUNBOOK_TEST_CHROMIUM=$(command -v chromium)" > "$RUNBOOK_TEST_STATE/env/chromium.env"
}

chromium_down() {
  :
}
