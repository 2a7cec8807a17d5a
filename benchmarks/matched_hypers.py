"""Hyper-parameters of metatrain's ``pet`` matched to ours, for side-by-side runs.

Both models get the same widths, depths, heads, cutoff and transformer choices
(normalisation, feed-forward activation, pre/post-LN, attention temperature).
metatrain's ``pet`` has node features of their own width (``d_node``) which we set
to ``d_pet``; its ``feedforward`` featurizer (a carried atom state, readout from the
last block) is chosen when ours carries the central token and reads out the last
block only, its paper-like ``residual`` featurizer otherwise.
"""

import copy

from metatrain.utils.architectures import get_default_hypers

OURS = "experimental.pet_ecse"
PEER = "pet"


NAMES = {OURS: "ours", PEER: "metatrain pet"}
"""How tables name the two architectures."""


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
        d_head=ours["d_readout"],
        d_feedforward=ours["d_feedforward"],
        num_heads=ours["num_heads"],
        num_attention_layers=ours["num_attention_layers"],
        num_gnn_layers=ours["num_gnn_layers"],
        normalization=ours["normalization"],
        activation=ours["activation"],
        attention_temperature=ours["attention_temperature"],
        transformer_type=ours["transformer_type"],
        featurizer_type=(
            "feedforward"
            if ours["carry_central_token"] and ours["readout"] == "last_block"
            else "residual"
        ),
    )
    return {OURS: ours, PEER: peer}
