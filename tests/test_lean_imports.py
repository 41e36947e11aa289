"""`import imgarc` keeps CompressAI's point-cloud stack and scipy.stats out of a codec's start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import sys
    import imgarc
    from imgarc.codec.architecture import Architecture, build_model
    build_model(Architecture("mbt2018-mean", 8, 8))
    print("geometric" if "torch_geometric" in sys.modules else "lean")
    print(type(sys.modules["scipy.stats"]).__name__)
    # What was deferred still works when asked for.
    import compressai, scipy.stats
    from compressai.entropy_models import GaussianConditional
    print(round(float(GaussianConditional._standardized_quantile(0.1)), 4))
    print(compressai.datasets.ImageFolder.__name__)
    import compressai.transforms.point
    print(type(sys.modules["scipy.stats"]).__name__, scipy.stats.norm.ppf(0.5))
    """
)


@pytest.mark.slow
def test_building_a_model_skips_torch_geometric_and_defers_what_it_does_not_use():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split("\n")[:5] == ["lean", "DeferredModule", "-1.2816", "ImageFolder", "module 0.0"]
