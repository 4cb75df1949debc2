"""The `staticllm` command. Each subcommand lives in its own module, which
exposes `register(subparsers)`; modules load only when their command runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from staticllm.errors import StaticLLMError

# subcommand -> (module with register(), one-line help)
_COMMANDS = {
    "import": ("staticllm.importer", "turn a Core ML .mlpackage into a runnable bundle"),
    "export": (
        "staticllm.exporter.cli",
        "export a checkpoint (Llama, Qwen2/3, Gemma 3, Mistral, Phi-3) to a bundle",
    ),
    "inspect": ("staticllm.inspect", "show a bundle's methods, specs and weight sharing"),
    "extract": ("staticllm.inspect", "write one standalone .mlpackage per method"),
    "generate": ("staticllm.generate.cli", "generate text from a bundle"),
    "chat": ("staticllm.generate.chat_cli", "chat with a bundle in the terminal"),
    "bench": ("staticllm.bench", "measure load time, time to first token and tokens/s"),
    "serve": ("staticllm.serving.cli", "serve a bundle over an OpenAI-compatible HTTP API"),
    "eval": ("staticllm.eval.cli", "perplexity of a bundle; SNR, top-1 and KL against a reference"),
    "check": ("staticllm.check.cli", "report what would fall off (or break on) the Apple Neural Engine"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="staticllm",
        description="Export LLMs (Llama, Qwen2/3, Gemma 3, Mistral, Phi-3) to Core ML bundles and run "
        "them on any platform.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # Only the chosen command's module is imported (export pulls in torch).
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in _COMMANDS.items():
        if name == wanted:
            importlib.import_module(module).register(sub, name)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # coremltools logs at import that it cannot predict off macOS and that
    # torch 2.13 is untested: both expected, and noise to every command.
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StaticLLMError as exc:
        print(f"staticllm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"staticllm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
