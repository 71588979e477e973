"""A trained model as a pitch tool: a whole recording in, a frame-by-frame track out (the API
that ``loader.load_model`` returns and the ``sotddsp-pitch`` command uses).

    import sotddsp
    model = sotddsp.load_model("default")            # or a checkpoint path; device="cuda"
    track = model.predict(audio, sample_rate)        # audio: mono (N,), NumPy or torch
    track.time, track.frequency, track.confidence, track.amplitudes

How a recording goes through the model, as each training example did: resampled to the model's
rate (``scipy.signal.resample_poly`` with the exact rational ratio), scaled to peak 0.9 (the
training data's peak), cut into chunks of the training length (``model.synth.n_samples``,
4096 samples; the tail zero-padded), each chunk framed as in training (T = chunk // hop frames,
the CQT zero-padded at the chunk's edges). Frame t of the recording is centred at sample
t * hop: time t * hop / sample_rate seconds (hop 256 at 16 kHz: 16 ms, the model's own step).

The frequency is the model's own f0: the soft-argmax of its pitch distribution,
``softmax(logits / temperature)`` over log-spaced bins (``autoencoder.soft_argmax_f0``). The
confidence is that distribution's peak probability (as PESTO's): 1 when all the mass sits on
one bin, 1 / Q_out (1/285) when it is flat. It is not calibrated: a sharp peak between two bins
(3 bins a semitone) reads about 0.5, and the model has no voicing output, so every frame has an
f0. Amplitudes are linear, of the signal scaled to peak 0.9 (``track.gain`` is that scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sotddsp.data.datamodule import DEFAULT_PEAK
from sotddsp.dsp.synth import remove_above_nyquist, upsample_linear, upsample_with_windows
from sotddsp.model.autoencoder import HarmonicAutoencoder

__all__ = [
    "PEAK",
    "PitchModel",
    "PitchTrack",
    "resample",
    "resynthesize",
    "scale_to_peak",
    "track_frames",
]

PEAK = DEFAULT_PEAK  # the training data's per-example peak (PreloadedSinusoidDataModule)


@dataclass(frozen=True)
class PitchTrack:
    """A recording's track, one row per frame t (T frames, K harmonics, Q pitch bins).

    time: float64 (T,) s, t * hop_length / sample_rate. frequency: float32 (T,) Hz, the
    model's f0. confidence: float32 (T,) in [1/Q, 1], the pitch distribution's peak
    probability. amplitudes: float32 (T, K), linear, of the signal scaled by ``gain``.
    activations: float32 (T, Q), the pitch distribution (rows sum to 1) over
    ``bin_frequencies`` (Q,) Hz, or None unless asked for. sample_rate, hop_length: the
    model's. gain: the factor that scaled the (resampled) input to peak 0.9 (1 for silence).
    """

    time: np.ndarray
    frequency: np.ndarray
    confidence: np.ndarray
    amplitudes: np.ndarray
    activations: np.ndarray | None
    bin_frequencies: np.ndarray
    sample_rate: int
    hop_length: int
    gain: float


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono audio (N,) from ``rate_in`` to ``rate_out`` Hz with ``resample_poly``.

    Up/down factors are rate_out / g and rate_in / g with g = gcd(rate_in, rate_out) (exact);
    the result has ceil(N * rate_out / rate_in) samples, float32 (unchanged if the rates match).
    """
    from scipy.signal import resample_poly

    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(rate_in, rate_out)
    return resample_poly(audio.astype(np.float64), rate_out // g, rate_in // g).astype(np.float32)


def scale_to_peak(audio: np.ndarray, peak: float = PEAK) -> tuple[np.ndarray, float]:
    """Scale audio (N,) to max |x| = peak: (scaled float32 (N,), gain); silence keeps gain 1."""
    top = float(np.max(np.abs(audio)))
    gain = peak / top if top > 0 else 1.0
    return (audio * gain).astype(np.float32), gain


@torch.inference_mode()
def track_frames(
    model: HarmonicAutoencoder,
    audio: np.ndarray,
    chunk_samples: int | None = None,
    batch_chunks: int = 16,
    activations: bool = False,
) -> dict[str, np.ndarray]:
    """f0, confidence, harmonic amplitudes (and the pitch distribution) of a whole signal.

    audio: (N,) at ``model.sample_rate``. The signal is zero-padded to a whole number of chunks
    of ``chunk_samples`` (default ``model.synth.n_samples``, the training length; a multiple of
    the hop), and ``batch_chunks`` chunks at a time go through ``model.compute_features`` and
    ``model.encode_distribution``. Returns float32 {"f0_hz": (T,) Hz, "confidence": (T,),
    "amplitudes": (T, K)}, float64 "bin_frequencies" (Q,) Hz (``pitch_bin_frequencies``) and,
    with ``activations``, float32 "activations" (T, Q); T = ceil(N / hop).
    """
    hop = model.hop_length
    chunk = int(model.synth.n_samples) if chunk_samples is None else chunk_samples
    if chunk < hop or chunk % hop != 0:
        raise ValueError(
            f"chunk_samples must be a positive multiple of the hop ({hop}), got {chunk}"
        )
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise ValueError(f"audio must have shape (N,) with N > 0, got {audio.shape}")
    n_frames = -(-audio.shape[0] // hop)
    n_chunks = -(-audio.shape[0] // chunk)
    padded = np.zeros(n_chunks * chunk, dtype=np.float32)
    padded[: audio.shape[0]] = audio
    chunks = torch.from_numpy(padded).view(n_chunks, chunk)
    parts: dict[str, list[Tensor]] = {"f0_hz": [], "confidence": [], "amplitudes": []}
    if activations:
        parts["activations"] = []
    for start in range(0, n_chunks, batch_chunks):
        frames = model.compute_features(chunks[start : start + batch_chunks].to(model.device))
        f0, amplitudes, distribution = model.encode_distribution(frames)
        parts["f0_hz"].append(f0.reshape(-1).cpu())
        parts["confidence"].append(distribution.amax(dim=-1).reshape(-1).cpu())
        parts["amplitudes"].append(amplitudes.reshape(-1, amplitudes.shape[-1]).cpu())
        if activations:
            parts["activations"].append(distribution.reshape(-1, distribution.shape[-1]).cpu())
    out = {key: torch.cat(values)[:n_frames].float().numpy() for key, values in parts.items()}
    out["bin_frequencies"] = model.pitch_bin_frequencies(distribution.shape[-1]).numpy()
    return out


@torch.inference_mode()
def resynthesize(
    model: HarmonicAutoencoder,
    f0_hz: np.ndarray | Tensor,
    amplitudes: np.ndarray | Tensor,
    block_frames: int = 256,
) -> np.ndarray:
    """The model's synthesizer on the whole track, in blocks, with continuous phase.

    f0_hz: (T,) Hz; amplitudes: (T, K). Equal (to float64 rounding) to
    ``model.decode(f0_hz[None], amplitudes[None], T * hop)[0]`` in float64, using memory for
    ``block_frames`` frames at a time: harmonics at or above Nyquist are zeroed per control
    frame (as the synthesizer does first), each block's controls are upsampled with two frames
    of context (as the synthesizer upsamples them), rendered with one hop of margin on each side
    (for its roll-off filter) by ``model.decode`` at one control frame per sample, after a
    silent first sample whose frequency sets the running phase. Returns float32 (T * hop,).
    """
    hop, rate = model.hop_length, model.sample_rate
    f0 = torch.as_tensor(f0_hz, dtype=torch.float64, device=model.device).reshape(1, -1, 1)
    amps = torch.as_tensor(amplitudes, dtype=torch.float64, device=model.device)[None]
    k = torch.arange(1, amps.shape[-1] + 1, dtype=torch.float64, device=model.device)
    amps = remove_above_nyquist(amps, f0 * k, rate)
    n_frames = f0.shape[1]
    out = np.empty(n_frames * hop, dtype=np.float32)
    phase = 0.0  # sum of 2 pi f / rate over the samples before the current block, mod 2 pi
    for a in range(0, n_frames, block_frames):
        b = min(a + block_frames, n_frames)
        lo, hi = max(a - 2, 0), min(b + 2, n_frames)
        f0_audio = upsample_linear(f0[:, lo:hi], (hi - lo) * hop)[0, :, 0]
        amp_audio = upsample_with_windows(amps[:, lo:hi], (hi - lo) * hop)[0]
        s0, s1 = (max(a - 1, 0) - lo) * hop, (min(b + 1, n_frames) - lo) * hop  # with margins
        core0, core1 = (a - lo) * hop, (b - lo) * hop
        omega = f0_audio * (2.0 * math.pi / rate)
        start_phase = (phase - float(omega[s0:core0].sum())) % (2.0 * math.pi)
        f0_in = torch.cat(
            [f0_audio.new_tensor([start_phase * rate / (2.0 * math.pi)]), f0_audio[s0:s1]]
        )
        amp_in = torch.cat([amp_audio.new_zeros(1, amp_audio.shape[1]), amp_audio[s0:s1]])
        audio = model.decode(f0_in[None], amp_in[None], f0_in.shape[0])[0, 1:]
        out[a * hop : b * hop] = audio[core0 - s0 : core1 - s0].float().cpu().numpy()
        phase = (phase + float(omega[core0:core1].sum())) % (2.0 * math.pi)
    return out


class PitchModel:
    """A trained harmonic autoencoder as a pitch tool (``loader.load_model`` builds one).

    ``predict(audio, sample_rate)`` gives a ``PitchTrack``; ``resynthesize(track)`` the model's
    harmonic resynthesis of it. ``autoencoder`` is the model itself (eval mode), ``name`` what
    it was loaded as (a shipped name or a path), ``provenance`` a shipped model's record (run,
    checkpoint, step, validation and test RPA), else {}.
    """

    def __init__(
        self, autoencoder: HarmonicAutoencoder, name: str, provenance: dict | None = None
    ) -> None:
        self.autoencoder = autoencoder.eval()
        self.name = name
        self.provenance = dict(provenance or {})

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (its input is resampled to it)."""
        return self.autoencoder.sample_rate

    @property
    def hop_length(self) -> int:
        """Samples between frames at ``sample_rate`` (the model's own step)."""
        return self.autoencoder.hop_length

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    def to(self, device: str | torch.device) -> PitchModel:
        """Move the model to ``device``; returns itself."""
        self.autoencoder.to(device)
        return self

    def predict(
        self,
        audio: np.ndarray | Tensor,
        sample_rate: int,
        *,
        activations: bool = False,
        batch_chunks: int = 16,
        chunk_samples: int | None = None,
    ) -> PitchTrack:
        """The track of a mono recording ``audio`` (N,) sampled at ``sample_rate`` Hz (NumPy or
        torch, any float dtype; mix channels first, e.g. ``x.mean(axis=1)`` for soundfile's
        (N, C)). ``activations``: keep the pitch distribution (T, Q) in the track.
        ``batch_chunks`` chunks of ``chunk_samples`` (default: the training length) go through
        the encoder at a time. No RNG is used. Raises ValueError (one line) for a bad input.
        """
        if isinstance(audio, Tensor):
            audio = audio.detach().cpu().numpy()
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono, shape (N,), got {audio.shape}; mix the "
                             "channels first")
        if audio.shape[0] == 0:
            raise ValueError("audio holds no samples")
        if not np.issubdtype(audio.dtype, np.floating) or not np.isfinite(audio).all():
            raise ValueError("audio must be finite floating-point samples")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) \
                or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        scaled, gain = scale_to_peak(resample(audio, int(sample_rate), self.sample_rate))
        frames = track_frames(self.autoencoder, scaled, chunk_samples, batch_chunks, activations)
        return PitchTrack(
            time=np.arange(frames["f0_hz"].shape[0]) * self.hop_length / self.sample_rate,
            frequency=frames["f0_hz"],
            confidence=frames["confidence"],
            amplitudes=frames["amplitudes"],
            activations=frames.get("activations"),
            bin_frequencies=frames["bin_frequencies"],
            sample_rate=self.sample_rate,
            hop_length=self.hop_length,
            gain=gain,
        )

    def resynthesize(self, track: PitchTrack, block_frames: int = 256) -> np.ndarray:
        """The model's harmonic resynthesis of ``track`` at ``sample_rate``: float32
        (T * hop_length,), phase-continuous, at the level of the scaled signal."""
        return resynthesize(self.autoencoder, track.frequency, track.amplitudes, block_frames)

    def __repr__(self) -> str:
        return (f"PitchModel({self.name!r}, {self.sample_rate} Hz, hop {self.hop_length}, "
                f"device {self.device})")
