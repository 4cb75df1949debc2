#!/usr/bin/env bash
# Runs the bundle fuzzer built with -DSTATICLLM_FUZZ=ON (see tests/fuzz/README.md).
#   bash tests/fuzz/run.sh BUILD_DIR SECONDS [libFuzzer flags...]
# New interesting inputs go to BUILD_DIR/fuzz-corpus, or $FUZZ_CORPUS (several
# fuzzers given the same one share what they find; the committed seeds in
# tests/fuzz/corpus are only read); a finding is written to
# BUILD_DIR/fuzz-artifacts/ and makes the exit status non-zero.
set -euo pipefail
build=$1
seconds=$2
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
corpus="${FUZZ_CORPUS:-$build/fuzz-corpus}"
mkdir -p "$corpus" "$build/fuzz-artifacts"
# Reports are fatal (the build uses -fno-sanitize-recover); 5 frames of
# allocation stack keep reports useful at a fraction of the default's cost.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=5}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
# A program asking for more working memory than this fails to load with a
# BundleError, well inside the 2 GB at which libFuzzer reports out-of-memory.
export STATICLLM_MAX_MEMORY_MB="${STATICLLM_MAX_MEMORY_MB:-1024}"
exec "$build/tests/fuzz/bundle_fuzzer" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=300000 \
  -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" \
  "$@" "$corpus" "$here/corpus" "$here/regressions"
