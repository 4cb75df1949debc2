"""Shared fixtures: small Core ML packages built with the coremltools MIL
builder (helpers in mil_fixtures.py, importable by any test module)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mil_fixtures import available_backends, two_function_package

# coremltools warns about the untested torch version and missing native
# predict libraries on Linux; neither matters for conversion.
warnings.filterwarnings("ignore", module="coremltools")


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=available_backends())
def backend(request) -> str:
    """Each backend this platform has: "mil" everywhere, also "coreml" on macOS."""
    return request.param


@pytest.fixture(scope="session")
def shared_weight_package(tmp_path_factory):
    """(package, weight): a two-function .mlpackage ('prefill' = 2 x @ W.T,
    'decode' = -(x @ W.T), default 'decode') whose functions share W [3, 4]."""
    weight = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    tmp = tmp_path_factory.mktemp("shared_weight")
    return two_function_package(tmp, weight, names=("prefill", "decode"), default="decode"), weight


@pytest.fixture(scope="session")
def chat_bundles(tmp_path_factory):
    """{"single": forward-only bundle (context 256), "multi": prefill/decode
    bundle (context 2048)}: the tiny random model with a ChatML tokenizer."""
    from chat_fixtures import make_chat_bundles

    return make_chat_bundles(tmp_path_factory.mktemp("chat"))
