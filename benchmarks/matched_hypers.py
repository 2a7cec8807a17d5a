"""Hyper-parameters of metatrain's ``pet`` matched to ours, for side-by-side runs.

Both models get the same widths, depths, heads and cutoff. metatrain's ``pet`` has
node features of their own width (``d_node``) which we set to ``d_pet``, and we
select its paper-like variant (``residual`` featurizer, post-LN, SiLU, LayerNorm).
"""

import copy

from metatrain.utils.architectures import get_default_hypers

OURS = "experimental.pet_ecse"
PEER = "pet"


def matched_hypers(**sizes) -> dict:
    """Model hypers of both architectures with the given sizes (default: ours)."""
    ours = copy.deepcopy(get_default_hypers(OURS)["model"])
    ours.update(sizes)
    peer = copy.deepcopy(get_default_hypers(PEER)["model"])
    peer.update(
        cutoff=ours["cutoff"],
        cutoff_width=ours["cutoff_width"],
        d_pet=ours["d_pet"],
        d_node=ours["d_pet"],
        d_head=ours["d_head"],
        d_feedforward=ours["d_feedforward"],
        num_heads=ours["num_heads"],
        num_attention_layers=ours["num_attention_layers"],
        num_gnn_layers=ours["num_gnn_layers"],
        normalization="LayerNorm",
        activation="SiLU",
        transformer_type="PostLN" if ours["transformer_type"] == "PostLN" else "PreLN",
        featurizer_type="residual",
    )
    return {OURS: ours, PEER: peer}
