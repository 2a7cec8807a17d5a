"""Long-range electrostatics on top of PET (App. F.9, the scheme of its Ref. 111):
local latent charges, their Coulomb interaction beyond the cutoff, fed back into
the readout. The charges and the Ewald, P3M or direct sums are metatrain's
long-range featurizer (``torch-pme``); this module only connects it to PET's
tokens.

For atom i with central tokens t_i^(k) of the blocks k = 1..K:

    q_i = W_q s_i,   s_i = Σ_k t_i^(k) / √K                (latent charges, d channels)
    φ_i = Σ_j q_j erf-screened 1/r_ij, beyond R_c           (per channel, torch-pme)
    t_i^(k) <- (t_i^(k) + MLP(φ_i)) / √2                    (every block's readout)

With layer-wise ECSE the tokens, hence the charges and φ, are exactly invariant;
with global ECSE the whole function is averaged over frames: both stay exact.
"""

from typing import List

import torch
from metatomic.torch import NeighborListOptions, System
from metatrain.utils.long_range import DummyLongRangeFeaturizer, LongRangeFeaturizer

from ..nn.message_passing import Tokens
from ..systems.transform import neighbor_vectors


class LongRange(torch.nn.Module):
    """The long-range part, or nothing when ``hypers["enable"]`` is false (then it
    holds no parameter, and :meth:`forward` returns the tokens unchanged)."""

    def __init__(self, hypers: dict, d_pet: int, options: NeighborListOptions):
        super().__init__()
        self.enabled = bool(hypers["enable"])
        self.use_ewald = bool(hypers["use_ewald"])
        self.options = options
        self.featurizer = (
            LongRangeFeaturizer(hypers, d_pet, options)
            if self.enabled
            else DummyLongRangeFeaturizer()
        )

    def forward(self, systems: List[System], tokens: Tokens) -> Tokens:
        """``tokens`` with the long-range features of every atom mixed into the
        central tokens of every block (and of every frame row with layer-wise
        ECSE). Every block's tokens must be those of all atoms."""
        if not self.enabled:
            return tokens
        self.featurizer.use_ewald = self.use_ewald or self.training
        short_range = torch.stack(tokens.central).sum(0) / len(tokens.central) ** 0.5
        distances: List[torch.Tensor] = []
        for system in systems:
            _, vectors = neighbor_vectors(system, self.options)
            distances.append(torch.linalg.vector_norm(vectors, dim=1))
        features = self.featurizer(systems, short_range, torch.cat(distances))
        scale = 0.5**0.5
        central = [(block + features) * scale for block in tokens.central]
        row_central: List[torch.Tensor] = []
        for block, rows in zip(tokens.row_central, tokens.frame_rows):
            row_central.append((block + features[rows.atoms]) * scale)
        return Tokens(
            central, tokens.edges, tokens.frame_rows, row_central, tokens.row_edges
        )
