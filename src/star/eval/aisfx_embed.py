"""Sound embeddings from aiSFX (`aisfx==0.1.2`, the ISMIR 2022 X-Sequential-CE CNN), for FD and the classifier.

We use only aisfx's network and checkpoint; the rest of its pipeline is replaced here because three
things in it do not work as shipped, and we patch them from our side (site-packages stays untouched):

1. its checkpoint is a pickled `(state_dict, ds_dict)` tuple holding numpy ints, which torch >= 2.6
   refuses under the default `weights_only=True`: we load it with `weights_only=False` (a local file
   from the installed package, not a download);
2. its librosa front end returns `[mels, frames]` while the network reads `[frames, mels]` (the
   essentia path returned the latter): we build `[frames, mels]` directly;
3. clips shorter than one 100-frame block (2.32 s) break its hop-size assertion: we zero-pad the
   spectrogram to one block (zero is what silence maps to after its normalisation).

Front end: aisfx's own preprocessing needs essentia (the paper's) or librosa (its fallback), neither of
which we install. We recompute the paper's essentia spectrogram in numpy, following essentia's
defaults: audio at 44.1 kHz with no gain change (EasyLoader's replayGain -6 plus its +6 dB preamp is a
factor 1), frames of 2048 centred at k * 1024 (FrameCutter, startFromZero=False), symmetric Hann
window, power spectrum, 96 triangles linear on the HTK mel scale over 0-22.05 kHz normalised to unit
sum (MelBands htkMel / warping / unit_sum), log10(1e4 * x + 1), divided by aisfx's 'original'
maximum 9.4578. Not replicated: FrameCutter's -100 dB noise on all-zero frames (a change below
1e-5 after compression).

Input is first brought to the project rate (`band_limit`, 16 kHz) so real and generated clips are
heard through the same band limit, then resampled to 44.1 kHz.

Shapes: `windows` -> [n, 512], one per 100-frame block (2.32 s) at a hop of `hop_frames` x 23.2 ms.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
import torch
from scipy.signal import resample_poly

from star.audio.io import SAMPLE_RATE, prepare_waveform

AISFX_SR = 44_100
BLOCK = 2048  # STFT frame (samples)
HOP = 1024  # STFT hop (samples), 23.2 ms
N_MELS = 96
SPEC_MAX = 9.457798957824707  # aisfx `spectrogram_normalize(spec_norm='original')`
WINDOW_FRAMES = 100  # frames per network input block (aisfx EMB_BLOCK_LENGTH), 2.32 s
CLIP_HOP_FRAMES = 50  # aisfx default emb_hop_size 0.5 (1.16 s), used for clip embeddings
EMBED_DIM = 512
FRAME_SECONDS = HOP / AISFX_SR


def _hz_to_htk_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _htk_mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def essentia_mel_weights() -> np.ndarray:
    """[96, 1025] filterbank as essentia's MelBands builds it (bins [round(lo), round(hi)) per band)."""
    n_bins = BLOCK // 2 + 1
    df = (AISFX_SR / 2.0) / (n_bins - 1)
    edges = _htk_mel_to_hz(np.linspace(_hz_to_htk_mel(0.0), _hz_to_htk_mel(AISFX_SR / 2.0), N_MELS + 2))
    weights = np.zeros((N_MELS, n_bins), dtype=np.float64)
    for i in range(N_MELS):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        j = np.arange(int(lo / df + 0.5), int(hi / df + 0.5))
        f = j * df
        m = _hz_to_htk_mel(f)
        up = (f >= lo) & (f < mid)
        down = (f >= mid) & (f < hi)
        w = np.zeros(len(j))
        w[up] = (m[up] - _hz_to_htk_mel(lo)) / (_hz_to_htk_mel(mid) - _hz_to_htk_mel(lo))
        w[down] = (_hz_to_htk_mel(hi) - m[down]) / (_hz_to_htk_mel(hi) - _hz_to_htk_mel(mid))
        weights[i, j] = w
        total = weights[i].sum()
        if total > 0:
            weights[i] /= total
    return weights.astype(np.float32)


def aisfx_spectrogram(wav44: np.ndarray) -> np.ndarray:
    """Mono float waveform at 44.1 kHz -> normalised log-mel [frames, 96] (essentia front end, see top)."""
    wav44 = np.asarray(wav44, dtype=np.float32)
    n = len(wav44)
    n_frames = -(-(n + BLOCK // 2) // HOP)  # frames centred at k*HOP while their start is inside the clip
    padded = np.zeros(BLOCK // 2 + n_frames * HOP + BLOCK, dtype=np.float32)
    padded[BLOCK // 2 : BLOCK // 2 + n] = wav44
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(BLOCK) / (BLOCK - 1))).astype(np.float32)
    weights = essentia_mel_weights()
    frames = np.lib.stride_tricks.sliding_window_view(padded, BLOCK)[::HOP][:n_frames]
    out = np.empty((n_frames, N_MELS), dtype=np.float32)
    for s in range(0, n_frames, 512):  # chunks bound memory on long inputs
        power = np.abs(np.fft.rfft(frames[s : s + 512] * window, axis=1)) ** 2
        out[s : s + 512] = power.astype(np.float32) @ weights.T
    return (np.log10(out * 1e4 + 1.0) / SPEC_MAX).astype(np.float32)


def _to_44k(wav: np.ndarray, sr: int, band_limit: int | None) -> np.ndarray:
    wav = prepare_waveform(wav, sr, sr, name="<eval audio>", allow_silent=True)
    if band_limit is not None and sr > band_limit:
        wav = prepare_waveform(wav, sr, band_limit, allow_silent=True)
        sr = band_limit
    if sr != AISFX_SR:
        g = gcd(int(sr), AISFX_SR)
        wav = resample_poly(wav, AISFX_SR // g, int(sr) // g).astype(np.float32)
    return wav


def window_centres(n_windows: int, hop_frames: int) -> np.ndarray:
    """Centre time in seconds of each block [n] (frame k is centred at k * 23.2 ms)."""
    return ((np.arange(n_windows) * hop_frames + (WINDOW_FRAMES - 1) / 2.0) * FRAME_SECONDS).astype(np.float32)


def window_starts(n_frames: int, hop_frames: int) -> np.ndarray:
    """Start frames of the full 100-frame blocks (aisfx `blocking` with drop_partial_block=True)."""
    n_frames = max(n_frames, WINDOW_FRAMES)
    return np.arange(0, n_frames - WINDOW_FRAMES + 1, hop_frames)


class AisfxEmbedder:
    """Lazily loaded aisfx embedding network on CPU. Thread count is the caller's (torch global) choice."""

    def __init__(self, band_limit: int | None = SAMPLE_RATE, batch_size: int = 16):
        self.band_limit = band_limit
        self.batch_size = batch_size
        self._net: torch.nn.Module | None = None

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self._net = _load_aisfx_net()
        return self._net

    def spectrogram(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """[frames, 96], zero-padded to at least one block (patch 3)."""
        spec = aisfx_spectrogram(_to_44k(wav, sr, self.band_limit))
        if len(spec) < WINDOW_FRAMES:
            spec = np.concatenate([spec, np.zeros((WINDOW_FRAMES - len(spec), N_MELS), np.float32)])
        return spec

    @torch.no_grad()
    def windows(self, wav: np.ndarray, sr: int, hop_frames: int = CLIP_HOP_FRAMES) -> tuple[np.ndarray, np.ndarray]:
        """Block embeddings [n, 512] and each block's centre time in seconds [n]."""
        if hop_frames < 1:
            raise ValueError("hop_frames must be >= 1")
        spec = self.spectrogram(wav, sr)
        starts = window_starts(len(spec), hop_frames)
        blocks = np.stack([spec[s : s + WINDOW_FRAMES] for s in starts])  # [n, 100, 96] = [b, time, freq]
        out = [
            self.net(torch.from_numpy(blocks[i : i + self.batch_size])).numpy()
            for i in range(0, len(blocks), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32), window_centres(len(starts), hop_frames)

    def embed_frames(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """[n, 512] block embeddings at aisfx's default hop (1.16 s)."""
        return self.windows(wav, sr, CLIP_HOP_FRAMES)[0]

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Clip embedding [512]: mean over the blocks of `embed_frames`."""
        return self.embed_frames(wav, sr).mean(axis=0)


def clip_embedding_from_windows(window_emb: np.ndarray, hop_frames: int) -> np.ndarray:
    """The `embed()` vector from blocks computed at a finer hop that divides 50 (saves a second pass)."""
    if CLIP_HOP_FRAMES % hop_frames:
        raise ValueError(f"hop_frames must divide {CLIP_HOP_FRAMES}, got {hop_frames}")
    return window_emb[:: CLIP_HOP_FRAMES // hop_frames].mean(axis=0)


def _load_aisfx_net() -> torch.nn.Module:
    from aisfx.inference import get_path_modelWeights, load_bestModel

    # Patch 1: a pickled (state_dict, ds_dict) tuple from the installed package itself.
    weights, ds_dict = torch.load(get_path_modelWeights(), map_location="cpu", weights_only=False)
    model = load_bestModel(weights, ds_dict, "cpu")
    return model.embedding_net.eval()


@lru_cache(maxsize=1)
def shared_embedder() -> AisfxEmbedder:
    """One process-wide embedder so the classifier and the FD metric share the loaded network."""
    return AisfxEmbedder()
