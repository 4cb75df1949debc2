"""staticllm: export LLMs (Llama, Qwen2/3, Gemma 3, Mistral, Phi-3) to Core ML bundles and run them anywhere.

Heavy parts (torch, coremltools, tokenizers) load lazily, so `import staticllm`
stays fast for code that only runs bundles.
"""

from __future__ import annotations

from typing import Any

from staticllm.errors import (
    BundleError,
    ContextOverflowError,
    ExportError,
    InputError,
    MetadataError,
    StaticLLMError,
    UnsupportedOpError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Runtime": "staticllm.runtime",
    "Method": "staticllm.runtime",
    "State": "staticllm.runtime",
    "import_mlpackage": "staticllm.importer",
    "export": "staticllm.exporter",
    "Generator": "staticllm.generate",
    "ChatSession": "staticllm.generate",
    "evaluate": "staticllm.eval",
    "EvalResult": "staticllm.eval",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'staticllm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BundleError",
    "ContextOverflowError",
    "ExportError",
    "InputError",
    "MetadataError",
    "StaticLLMError",
    "UnsupportedOpError",
    *_LAZY,
]
