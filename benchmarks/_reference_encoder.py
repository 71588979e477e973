"""The encoder's first formulation, layer by layer with its nn.Conv1d modules, for the benchmarks.

Same parameters and state_dict as sotddsp.model.encoder.PESTOEncoder (it is a subclass); only the
computation differs: NCL layout, one autograd node per layer, the Toeplitz head as a
1-channel conv1d with kernel D_in + D_out - 1.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from sotddsp.model.encoder import PESTOEncoder, exp_sigmoid


class ConvReferenceEncoder(PESTOEncoder):
    """PESTOEncoder as nn.Conv1d layers; forward(cqt_frames (N, Q)) -> (logits, amplitudes)."""

    def features(self, cqt_frames: Tensor) -> Tensor:
        """cqt_frames (N, Q) -> flattened features (N, c4 * Q), channel-major."""
        slope = self.leaky_relu_slope
        x = self.input_norm(cqt_frames.unsqueeze(1))
        x = F.leaky_relu(self.input_conv(x), slope)
        for conv in self.prefilter_convs:
            y = F.leaky_relu(conv(x), slope)
            x = x + y if self.residual else y
        for conv in self.pointwise_convs:
            x = F.leaky_relu(conv(x), slope)
        x = self.output_conv(self.dropout(x))
        return x.flatten(1)

    def pitch_logits(self, features: Tensor) -> Tensor:
        """The Toeplitz head as a conv1d: features (N, D) -> (N, Q_out)."""
        n_out = self.n_bins_out
        return F.conv1d(features.unsqueeze(1), self.pitch_head.weight, padding=n_out - 1).squeeze(1)

    def forward(self, cqt_frames: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(cqt_frames)
        return self.pitch_logits(h), exp_sigmoid(self.amplitude_head(h))
