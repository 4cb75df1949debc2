#!/usr/bin/env bash
# Installs everything staticllm needs on a fresh Debian machine: the two
# system packages the C++ core builds against, the tools CI uses (clang with
# its sanitizer and libFuzzer runtimes, llvm-symbolizer for their reports,
# clang-format, ccache), then the package itself with its export, generation,
# serving and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_PACKAGES="nlohmann-json3-dev catch2 clang-format clang libclang-rt-14-dev llvm ccache"
if ! dpkg -s $APT_PACKAGES >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PACKAGES
fi

# torch is pinned exactly in the extras, so pip takes the CPU build and never
# a newer release with gigabytes of CUDA packages.
python3 -m pip install --quiet ".[export,generate,serve,test]"
