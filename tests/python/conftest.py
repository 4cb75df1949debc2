from __future__ import annotations

import warnings

import pytest

# coremltools warns about the untested torch version and missing native
# predict libraries on Linux; neither matters for conversion.
warnings.filterwarnings("ignore", module="coremltools")


@pytest.fixture(scope="session")
def rng():
    import numpy as np

    return np.random.default_rng(0)
