"""Where the float networks run: one small interface, so the codec does not care which runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Networks(ABC):
    """The three float networks of a hyperprior codec, on numpy float32 arrays [1, C, H, W].

    Each call runs on one intra-op thread: the same sums in the same order whatever the
    machine's core count or the pool it runs in, so the same latents and pixels (cores are used
    by tiles and photos side by side instead, imgarc.codec.tiles and imgarc.ordered_pool). The
    integer h_s (which selects coding tables) never runs here: it is numpy, exact, in
    imgarc.codec.int_hyper.
    """

    @abstractmethod
    def analysis(self, x: np.ndarray) -> np.ndarray:
        """g_a: pixels in [0, 1] [1, 3, H, W] -> y [1, M, H/16, W/16]."""

    @abstractmethod
    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """h_a: y [1, M, h, w] -> z [1, N, h/4, w/4] (ScaleHyperprior models read |y|)."""

    @abstractmethod
    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        """g_s: ŷ [1, M, h, w] -> pixels (unclamped) [1, 3, 16h, 16w]."""

    def prepare_synthesis(self) -> None:
        """Start making g_s ready (a runtime that builds it on first use) in the background, so
        that it is ready when ŷ is: a decode calls this before its entropy decoding and h_s."""

    def release_memory(self) -> None:
        """Hand back memory the runtime keeps between calls (after a large photo's networks)."""
