"""Trained torch model -> inference weights file (tables built here, once, and shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgarc.codec.architecture import COMPRESSAI_TABLE_BUFFERS, Architecture
from imgarc.codec.int_hyper import integerize_h_s
from imgarc.codec.quality import build_quality_gains
from imgarc.codec.storage_bits import StorageBits, bits_limit
from imgarc.codec.weights import CodingTables, WeightsFile, WeightStorage, save_weights
from imgarc.coders.tables import CdfTables

# Gaussian scale levels: 128 log-spaced levels (adjacent ratio ≈ 1.05, so snapping a scale to
# its level costs well under 0.1 % in rate); CompressAI's lower bound 0.11.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 128



def scale_table() -> np.ndarray:
    return np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))


def _cdf_tables(entropy_model) -> CdfTables:
    return CdfTables(
        entropy_model._quantized_cdf.numpy().astype(np.int32),
        entropy_model._cdf_length.numpy().astype(np.int32),
        entropy_model._offset.numpy().astype(np.int32),
    )


def float_params(model, half: bool) -> dict[str, np.ndarray]:
    """The model's state dict minus CompressAI's table buffers, as numpy.

    With `half`, learned parameters are stored as fp16; buffers stay fp32 (they hold constants
    such as the 1e-9 likelihood bound and GDN's 2**-36 pedestal, which fp16 flushes to zero).
    """
    learned = {name for name, _ in model.named_parameters()}
    out = {}
    for name, t in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in COMPRESSAI_TABLE_BUFFERS:
            continue
        a = t.detach().cpu().numpy()
        out[name] = a.astype(np.float16) if half and name in learned and a.dtype == np.float32 else a
    return out


def coding_tables(model, h_s_weight_limit: int | None = None) -> CodingTables:
    """Build every coding table from the model's learned densities (float math, run once);
    `h_s_weight_limit`: the integer h_s's weights within ± it, per channel (see integerize_h_s)."""
    import torch

    model = model.cpu().eval()
    with torch.no_grad():
        model.entropy_bottleneck.update(force=True)
        scales = scale_table()
        model.gaussian_conditional.update_scale_table(torch.tensor(scales, dtype=torch.float32), force=True)
        medians = model.entropy_bottleneck.quantiles[:, 0, 1].double().numpy()
    hyper = integerize_h_s(model.h_s, medians, scales, weight_limit=h_s_weight_limit)
    quality = build_quality_gains(model) if getattr(model, "rate_points", 1) > 1 else None
    return CodingTables(z=_cdf_tables(model.entropy_bottleneck), y=_cdf_tables(model.gaussian_conditional),
                        hyper=hyper, quality=quality)


def export_model(model, arch: Architecture, model_id: str, path: Path, meta: dict, half: bool = True,
                 storage: WeightStorage = WeightStorage.FLOAT, storage_bits: StorageBits = StorageBits()) -> str:
    """Write the inference weights file for `model`, its networks stored as `storage` says
    (int8 storage: each network's weights within its `storage_bits`); returns its sha256 (hex).

    With `half`, float parameters are stored as fp16 and the *tables are built from the fp16
    model*, so what a user loads is exactly what the tables were made for. (Int8 storage rounds
    only convolutions of g_a, h_a and g_s, which no table depends on.)
    """
    import torch

    model = model.cpu().eval()
    if half:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    integer_storage = storage is WeightStorage.INT8
    tables = coding_tables(model, h_s_weight_limit=bits_limit(storage_bits.h_s) if integer_storage else None)
    return save_weights(WeightsFile(model_id, arch, float_params(model, half), tables, meta, storage=storage,
                                    storage_bits=storage_bits if integer_storage else StorageBits()), path)
