#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs requirements.lock plus the project (editable).
# The same steps run in the Dockerfile and in CI. Idempotent: rerunning re-syncs the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  if [[ -n "${EDGENAS_PYTHON:-}" ]]; then echo "$EDGENAS_PYTHON"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    local p
    p="$(pyenv root)/versions/3.10.13/bin/python3.10"
    [[ -x $p ]] && { echo "$p"; return; }
    for p in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [[ -x $p ]] && { echo "$p"; return; }
    done
  fi
  for p in python3.10 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,10) else 1)'; then
      command -v "$p"; return
    fi
  done
  echo "error: EdgeNAS needs CPython 3.10 (TFX 1.16 supports no newer Python). Install it (pyenv install 3.10, apt install python3.10, or the python:3.10 image) or set EDGENAS_PYTHON=/path/to/python3.10" >&2
  exit 2
}

PYTHON=$(find_python)
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,10) else 1)'; then
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
# g++ is needed by the firmware-bundle compile test; the cross toolchains, their C/C++ libraries, make and
# QEMU by `edgenas emulate` and the firmware tests (DESIGN.md section 2b). Install what is missing where we
# may (root + apt); otherwise say what to install (the firmware tests then skip with that reason).
need_pkgs=()
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-arm-none-eabi)
[[ -f /usr/lib/arm-none-eabi/newlib/librdimon.a ]] || need_pkgs+=(libnewlib-arm-none-eabi)
[[ -d /usr/include/newlib/c++ ]] || need_pkgs+=(libstdc++-arm-none-eabi-newlib)
command -v qemu-system-arm >/dev/null 2>&1 || need_pkgs+=(qemu-system-arm)
command -v riscv64-unknown-elf-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-riscv64-unknown-elf)
[[ -d /usr/lib/picolibc/riscv64-unknown-elf ]] || need_pkgs+=(picolibc-riscv64-unknown-elf)
command -v qemu-system-riscv32 >/dev/null 2>&1 || need_pkgs+=(qemu-system-misc)
# headless Chromium renders `edgenas report`'s HTML in tests/test_report.py (screenshot and DOM)
# (EDGENAS_TEST_BROWSER=0 skips it: the pipeline image renders reports without a browser)
if [[ ${EDGENAS_TEST_BROWSER:-1} != 0 ]]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need_pkgs+=(chromium)
fi
[[ -d /usr/share/fonts/truetype/dejavu ]] || need_pkgs+=(fonts-dejavu-core)   # its text, on a slim image
if (( ${#need_pkgs[@]} )); then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    echo "setup: installing ${need_pkgs[*]} (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: missing ${need_pkgs[*]}: install them (Debian/Ubuntu: sudo apt-get install ${need_pkgs[*]}); without them \`edgenas emulate\` exits 2 and the firmware and report-rendering tests skip" >&2
  fi
fi
.venv/bin/uv pip sync --python .venv/bin/python -q requirements.lock
.venv/bin/uv pip install --python .venv/bin/python -q --no-deps -e .
echo "setup done: .venv (Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'))"
