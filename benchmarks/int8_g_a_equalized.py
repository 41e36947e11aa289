"""An int8 g_a with cross-layer equalization through its GDNs (issue 22): a diagnostic.

Each of g_a's second and third convolutions has its output channels scaled by s (their largest
|value| over 16 training crops brought up to the largest channel's, at most --clamp times); the
GDN after it gets γ[c, j] / s[j]² and the next convolution's inputs are divided by s. The float
network computes the same y (checked on 8 other crops), while per-tensor int8 grids then fit
every channel. The grids are measured and searched as `imgarc optimize --int8` does
(`fake_quant.calibrated_ranges`). Writes two weights files beside --out: the equalized model in
float (its rescaled layers stored at 8 bits) and with the int8 grids; compare them with

    python benchmarks/weight_storage.py --variant cle-float=OUT/cle-float.npz --variant cle-int8=OUT/cle-int8.npz

    python benchmarks/int8_g_a_equalized.py [--model msh128-fast-vr2] [--clamp 16] [--out runs/int8ga-cle]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from int8_g_a import TRAIN

from imgarc.codec.fake_quant import calibrated_ranges
from imgarc.codec.registry import find_model, load_codec
from imgarc.codec.weights import load_weights, save_weights
from imgarc.train.crops import CropSampler, load_photos

CROP = 192
EQUALIZED = ((2, 3, 4), (4, 5, 6))  # (convolution, its GDN, the next convolution) in g_a


def crops(photos: list, count: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(CropSampler(photos, CROP, seed=seed).batch(count)).permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def equalize(g_a: torch.nn.Sequential, calibration: torch.Tensor, clamp: float) -> None:
    """Rescale g_a in place (see the module's docstring)."""
    peaks: dict[int, torch.Tensor] = {}

    def record(i: int):
        return lambda _m, _inputs, out: peaks.__setitem__(i, torch.maximum(peaks.get(i, torch.zeros(out.shape[1])),
                                                                           out.abs().amax((0, 2, 3))))

    hooks = [g_a[conv].register_forward_hook(record(conv)) for conv, _, _ in EQUALIZED]
    for batch in calibration.split(4):
        g_a(batch)
    for hook in hooks:
        hook.remove()
    for conv, gdn, following in EQUALIZED:
        s = (peaks[conv].max() / peaks[conv].clamp_min(1e-6)).clamp(max=clamp)
        g_a[conv].weight.mul_(s[:, None, None, None])
        g_a[conv].bias.mul_(s)
        gamma = g_a[gdn].gamma_reparam(g_a[gdn].gamma)
        g_a[gdn].gamma.copy_(g_a[gdn].gamma_reparam.init(gamma / s[None, :] ** 2))
        g_a[following].weight.div_(s[None, :, None, None])
        print(f"g_a.{conv}: output scales {float(s.min()):.2f}-{float(s.max()):.2f} (median {float(s.median()):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="msh128-fast-vr2")
    parser.add_argument("--clamp", type=float, default=16.0)
    parser.add_argument("--out", type=Path, default=Path("runs/int8ga-cle"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    weights, _ = load_weights(find_model(args.model).path)
    model = load_codec(args.model).torch_model.eval()
    photos = load_photos(TRAIN, CROP)
    calibration, check = crops(photos, 16, seed=0), crops(photos, 8, seed=5)
    with torch.no_grad():
        before = model.g_a(check)
    equalize(model.g_a, calibration, args.clamp)
    with torch.no_grad():
        print(f"float y moved by at most {float((model.g_a(check) - before).abs().max()):.2e}")
    ranges = calibrated_ranges(model, calibration)
    state = model.g_a.state_dict()
    changed = {f"g_a.{name}": state[name].numpy() for conv, gdn, following in EQUALIZED
               for name in (f"{conv}.weight", f"{conv}.bias", f"{gdn}.gamma", f"{following}.weight")}
    args.out.mkdir(parents=True, exist_ok=True)
    bits = dataclasses.replace(weights.storage_bits, g_a=8)  # rescaled columns do not fit a 6-bit grid
    for name, grids in (("cle-float", {}), ("cle-int8", ranges)):
        variant = dataclasses.replace(weights, model_id=name, params=weights.params.with_changes(changed),
                                      int8_ranges=grids, storage_bits=bits)
        print(f"{args.out / name}.npz", save_weights(variant, args.out / f"{name}.npz"))


if __name__ == "__main__":
    main()
