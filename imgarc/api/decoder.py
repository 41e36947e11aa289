"""Decode one archive entry: its latents (no synthesis network), its pixels, or its file's bytes.

EntryDecoder is the hook for everything that reads entries: extract and salvage call
`file_bytes`, verify calls `latents`, reading archives as data calls `latents` only. Its
methods are pure functions of (header, payload), so a subclass may memoize or record them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from imgarc.api.results import Timings
from imgarc.archive import KIND_IMAGE, KIND_STORED, EntryHeader
from imgarc.codec.image_codec import ImageCodec, LatentCode
from imgarc.codec.padding import padded_size
from imgarc.codec.payload import unpack_image_payload
from imgarc.codec.registry import how_to_get_model, load_codec
from imgarc.coders import CODER_NAMES, get_coder
from imgarc.errors import ArchiveError, LatentStreamError, ModelError
from imgarc.photo import MAX_PIXELS, photo_file_bytes, unpack_stored
from imgarc.runtime.device import Device


@dataclass
class DecodedLatents:
    """A coded photo's latents, entropy-decoded, and the codec that made them."""

    codec: ImageCodec
    code: LatentCode


class EntryDecoder:
    """Decodes entries. Thread-safe: extract calls it from several decode threads at once.
    `device`: where g_s runs (resolved: runtime.device; the CPU unless asked)."""

    device: Device = Device.CPU  # a class default too: subclasses that record or memoize keep it

    def __init__(self, device: Device = Device.CPU) -> None:
        self.device = device

    def codec_for(self, header: EntryHeader) -> ImageCodec:
        """The installed model a coded photo was made with; refuses other weights or tables."""
        codec = load_codec(header.model_id, self.device)  # cached by the registry
        if codec.weights_sha256 != header.weights_sha256.hex():
            raise ModelError(
                f"{header.path!r} was made with other weights for model {header.model_id!r} "
                f"(sha256 {header.weights_sha256.hex()[:12]}…, installed {codec.weights_sha256[:12]}…); "
                f"{how_to_get_model(header.model_id)}"
            )
        if codec.tables_sha256 != header.tables_sha256.hex():
            raise ModelError(f"{header.path!r} was coded with other coding tables than model {header.model_id!r} has; refusing to decode")
        return codec

    def latents(self, header: EntryHeader, payload: bytes, timings: Timings | None = None) -> DecodedLatents:
        """ŷ and ẑ of a coded photo, with σ̂'s table indexes and μ̂ (no synthesis network runs)."""
        timings = timings if timings is not None else Timings()
        if header.coder not in CODER_NAMES:
            raise ArchiveError(f"{header.path!r} uses coder {header.coder!r}, unknown to this imgarc; upgrade imgarc")
        codec = self.codec_for(header)
        w, h = header.width, header.height
        padded = padded_size(h, w, codec.stride) if w > 0 and h > 0 else (0, 0)
        # The padded area bounds decode memory: a 1-pixel-tall, 40M-wide header must not pass.
        if not (0 < padded[0] * padded[1] <= MAX_PIXELS) or (header.padded_height, header.padded_width) != padded:
            raise LatentStreamError(f"image size {w}x{h} (padded {header.padded_width}x{header.padded_height}) is inconsistent")
        coder = get_coder(header.coder)
        z_stream, y_stream = unpack_image_payload(payload)
        z_shape, y_shape = codec.latent_shapes(header.padded_height, header.padded_width)
        t0 = time.perf_counter()
        z = coder.decode(z_stream, codec.z_indexes(z_shape), codec.tables.z).reshape(z_shape)
        t1 = time.perf_counter()
        gains = codec.gains_for(header.quality)
        y_indexes, y_means = codec.y_indexes_and_means(z, gains)
        t2 = time.perf_counter()
        y = coder.decode(y_stream, y_indexes.ravel(), codec.tables.y).reshape(y_shape)
        t3 = time.perf_counter()
        timings.coder += (t1 - t0) + (t3 - t2)
        timings.model += t2 - t1
        return DecodedLatents(codec, LatentCode(z, y, y_indexes, y_means, gains))

    def pixels(self, header: EntryHeader, payload: bytes, timings: Timings | None = None) -> np.ndarray:
        """A coded photo's decoded RGB pixels, uint8 [H, W, 3]."""
        timings = timings if timings is not None else Timings()
        self.codec_for(header).networks.prepare_synthesis()
        decoded = self.latents(header, payload, timings)
        codec = decoded.codec
        t0 = time.perf_counter()
        y_hat = codec.y_hat(decoded.code, consume=True)  # over the symbols' memory
        del decoded  # g_s needs only ŷ: a 100-megapixel photo's tables and means are another 375 MB
        rgb = codec.synthesize_y_hat(y_hat, header.height, header.width)
        timings.model += time.perf_counter() - t0
        return rgb

    def file_bytes(self, header: EntryHeader, payload: bytes, image_format: str = "keep",
                   timings: Timings | None = None) -> bytes:
        """The bytes of the file an entry extracts to (`image_format`: see extract --format)."""
        if header.kind == KIND_STORED:
            return unpack_stored(header.storage, payload, header.original_size, header.original_sha256, header.path)
        if header.kind != KIND_IMAGE:
            raise ArchiveError(f"{header.path!r} has entry kind {header.kind}, unknown to this imgarc; upgrade imgarc")
        rgb = self.pixels(header, payload, timings)
        return photo_file_bytes(rgb, header, image_format)  # source format (or --format), metadata, alpha
