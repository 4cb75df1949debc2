"""The exception hierarchy; the native module raises these same classes."""

from __future__ import annotations


class StaticLLMError(Exception):
    """Base class of every error staticllm raises on purpose."""


class BundleError(StaticLLMError):
    """A bundle directory or one of its files is missing, truncated or corrupt."""


class MetadataError(StaticLLMError):
    """metadata.json does not follow the schema; the message names the key."""


class InputError(StaticLLMError, ValueError):
    """Inputs do not match a method's specs, or a generation option is invalid."""


class UnsupportedOpError(StaticLLMError):
    """The program uses an op the portable interpreter lacks."""


class ExportError(StaticLLMError):
    """A checkpoint or an export option cannot be turned into a bundle."""


class ContextOverflowError(StaticLLMError):
    """A prompt plus the requested new tokens do not fit in the context."""


__all__ = [
    "StaticLLMError",
    "BundleError",
    "MetadataError",
    "InputError",
    "UnsupportedOpError",
    "ExportError",
    "ContextOverflowError",
]
