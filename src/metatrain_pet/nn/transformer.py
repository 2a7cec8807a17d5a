"""The transformer of a PET block, with cutoff-modulated attention."""

import math

import torch


class CutoffAttention(torch.nn.Module):
    """Multi-head self-attention whose coefficients are multiplied by the cutoff
    weight of the attended token and renormalised (Sec. 6 of the paper):
    α_ij <- α_ij f_c(r_j) / Σ_j' α_ij' f_c(r_j').

    Tokens leaving the cutoff sphere thus fade out smoothly, and padding tokens
    (weight 0) are ignored.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_pet ({d_model}) must be a multiple of num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.input_projection = torch.nn.Linear(d_model, 3 * d_model)
        self.output_projection = torch.nn.Linear(d_model, d_model)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """
        :param tokens: ``(n_env, n_tokens, d_model)``
        :param weights: cutoff weight of every token, ``(n_env, n_tokens)``, zero for
            padding; at least one token per environment must have a positive weight
        :return: updated tokens, ``(n_env, n_tokens, d_model)``
        """
        n_env, n_tokens, d_model = tokens.shape
        qkv = self.input_projection(tokens)
        qkv = qkv.reshape(n_env, n_tokens, 3, self.num_heads, self.d_head)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)

        scores = query @ key.transpose(-1, -2) / math.sqrt(self.d_head)
        attended = (weights > 0.0)[:, None, None, :]
        scores = scores.masked_fill(~attended, float("-inf"))
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()
        coefficients = torch.exp(scores) * weights[:, None, None, :]
        coefficients = coefficients / coefficients.sum(dim=-1, keepdim=True)

        mixed = (coefficients @ value).transpose(1, 2).reshape(n_env, n_tokens, d_model)
        return self.output_projection(mixed)


class TransformerLayer(torch.nn.Module):
    """Attention and a SiLU feed-forward network, each wrapped in a residual
    connection, with layer normalisation after (``PostLN``, the classical
    transformer used by the paper) or before (``PreLN``) each sub-layer."""

    def __init__(
        self, d_model: int, num_heads: int, d_feedforward: int, pre_norm: bool
    ):
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = CutoffAttention(d_model, num_heads)
        self.attention_norm = torch.nn.LayerNorm(d_model)
        self.feedforward = torch.nn.Sequential(
            torch.nn.Linear(d_model, d_feedforward),
            torch.nn.SiLU(),
            torch.nn.Linear(d_feedforward, d_model),
        )
        self.feedforward_norm = torch.nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            tokens = tokens + self.attention(self.attention_norm(tokens), weights)
            return tokens + self.feedforward(self.feedforward_norm(tokens))
        tokens = self.attention_norm(tokens + self.attention(tokens, weights))
        return self.feedforward_norm(tokens + self.feedforward(tokens))


class Transformer(torch.nn.Module):
    """A stack of ``num_layers`` transformer layers (n_TL in the paper); with
    ``PreLN``, a final layer normalisation closes the stack."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_feedforward: int,
        num_layers: int,
        pre_norm: bool,
    ):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [
                TransformerLayer(d_model, num_heads, d_feedforward, pre_norm)
                for _ in range(num_layers)
            ]
        )
        self.final_norm = (
            torch.nn.LayerNorm(d_model) if pre_norm else torch.nn.Identity()
        )

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens, weights)
        return self.final_norm(tokens)
