"""The transformer of a PET block, with cutoff-modulated attention."""

import math
from dataclasses import dataclass

import torch


class CutoffAttention(torch.nn.Module):
    """Multi-head self-attention whose coefficients are multiplied by the cutoff
    weight of the attended token and renormalised (Sec. 6 of the paper):
    α_ij <- α_ij f_c(r_j) / Σ_j' α_ij' f_c(r_j').

    Multiplying the softmax numerators by f_c and renormalising is the softmax of
    the scores shifted by log f_c, which is how it is computed. Tokens leaving the
    cutoff sphere fade out smoothly, and padding tokens (weight 0) are ignored.

    In evaluation mode the fused ``scaled_dot_product_attention`` kernel is used
    (except on CPU with autograd on, e.g. for forces, where the explicit softmax is
    faster); in training mode an explicit softmax, which (unlike the fused kernels)
    supports the double backward needed to train on forces.
    """

    def __init__(self, d_model: int, num_heads: int, temperature: float = 1.0):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_pet ({d_model}) must be a multiple of num_heads ({num_heads})"
            )
        if not temperature > 0.0:
            raise ValueError(f"attention_temperature must be > 0, got {temperature}")
        self.num_heads = num_heads
        self.head_width = d_model // num_heads
        self.scale = 1.0 / (math.sqrt(self.head_width) * temperature)
        self.input_projection = torch.nn.Linear(d_model, 3 * d_model)
        self.output_projection = torch.nn.Linear(d_model, d_model)

    def forward(self, tokens: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
        """
        :param tokens: ``(n_env, n_tokens, d_model)``
        :param log_weights: logarithm of the cutoff weight of every token,
            ``(n_env, n_tokens)``, -inf for padding; at least one token per
            environment must be finite
        :return: updated tokens, ``(n_env, n_tokens, d_model)``
        """
        n_env, n_tokens, d_model = tokens.shape
        qkv = self.input_projection(tokens)
        qkv = qkv.reshape(n_env, n_tokens, 3, self.num_heads, self.head_width)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = log_weights[:, None, None, :].to(query.dtype)

        if self.training or (torch.is_grad_enabled() and tokens.device.type == "cpu"):
            # with autograd on, CPU attention falls back to a math path with extra
            # masking passes: the explicit softmax is cheaper there. Scaling and
            # shifting in place is safe (matmul does not keep its output for the
            # backward) and saves two temporaries of the size of the scores.
            scores = query @ key.transpose(-1, -2)
            scores = scores.mul_(self.scale).add_(bias)
            coefficients = torch.softmax(scores, dim=-1)
            mixed = coefficients @ value
        else:
            mixed = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=bias, scale=self.scale
            )
        mixed = mixed.transpose(1, 2).reshape(n_env, n_tokens, d_model)
        return self.output_projection(mixed)


def log_cutoff_weights(weights: torch.Tensor) -> torch.Tensor:
    """log f_c with -inf (and a zero gradient) where the weight is zero."""
    positive = weights > 0.0
    safe = torch.where(positive, weights, torch.ones_like(weights))
    return torch.where(
        positive, torch.log(safe), torch.full_like(weights, float("-inf"))
    )


class SwiGLU(torch.nn.Module):
    """Gated feed-forward network ``W_out (u ⊙ σ(g))`` with ``(u, g) = W_in x``
    (Shazeer, *GLU variants improve transformer*, 2020, with the sigmoid gate)."""

    def __init__(self, d_model: int, d_feedforward: int):
        super().__init__()
        self.input_projection = torch.nn.Linear(d_model, 2 * d_feedforward)
        self.output_projection = torch.nn.Linear(d_feedforward, d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        values, gates = self.input_projection(tokens).chunk(2, dim=-1)
        return self.output_projection(values * torch.sigmoid(gates))


@dataclass
class TransformerOptions:
    """The choices that shape every transformer layer (their defaults are those of
    ``ModelHypers``)."""

    pre_norm: bool
    normalization: str
    activation: str
    temperature: float


def normalization_layer(kind: str, d_model: int) -> torch.nn.Module:
    """``LayerNorm`` (centred and scaled, with a bias) or ``RMSNorm`` (scaled by the
    root mean square only)."""
    if kind == "LayerNorm":
        return torch.nn.LayerNorm(d_model)
    if kind == "RMSNorm":
        return torch.nn.RMSNorm(d_model)
    raise ValueError(f"normalization must be 'LayerNorm' or 'RMSNorm', got {kind!r}")


def feedforward_network(kind: str, d_model: int, d_feedforward: int) -> torch.nn.Module:
    """The position-wise network of a transformer layer: ``SiLU`` (two linear
    layers, the paper's) or ``SwiGLU``."""
    if kind == "SiLU":
        return torch.nn.Sequential(
            torch.nn.Linear(d_model, d_feedforward),
            torch.nn.SiLU(),
            torch.nn.Linear(d_feedforward, d_model),
        )
    if kind == "SwiGLU":
        return SwiGLU(d_model, d_feedforward)
    raise ValueError(f"activation must be 'SiLU' or 'SwiGLU', got {kind!r}")


class TransformerLayer(torch.nn.Module):
    """Attention and a feed-forward network, each wrapped in a residual connection,
    with normalisation after (``PostLN``, the classical transformer used by the
    paper) or before (``PreLN``) each sub-layer."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_feedforward: int,
        options: TransformerOptions,
    ):
        super().__init__()
        self.pre_norm = options.pre_norm
        self.attention = CutoffAttention(d_model, num_heads, options.temperature)
        self.attention_norm = normalization_layer(options.normalization, d_model)
        self.feedforward = feedforward_network(
            options.activation, d_model, d_feedforward
        )
        self.feedforward_norm = normalization_layer(options.normalization, d_model)

    def forward(self, tokens: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            tokens = tokens + self.attention(self.attention_norm(tokens), log_weights)
            return tokens + self.feedforward(self.feedforward_norm(tokens))
        tokens = self.attention_norm(tokens + self.attention(tokens, log_weights))
        return self.feedforward_norm(tokens + self.feedforward(tokens))


class Transformer(torch.nn.Module):
    """A stack of ``num_layers`` transformer layers (n_TL in the paper); with
    ``PreLN``, a final normalisation closes the stack."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_feedforward: int,
        num_layers: int,
        options: TransformerOptions,
    ):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [
                TransformerLayer(d_model, num_heads, d_feedforward, options)
                for _ in range(num_layers)
            ]
        )
        self.final_norm = (
            normalization_layer(options.normalization, d_model)
            if options.pre_norm
            else torch.nn.Identity()
        )

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """:param weights: cutoff weights of the tokens, 0 for padding"""
        log_weights = log_cutoff_weights(weights)
        for layer in self.layers:
            tokens = layer(tokens, log_weights)
        return self.final_norm(tokens)
