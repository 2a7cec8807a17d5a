"""Extra inputs as per-atom features (App. C.3): scalar atomic labels such as
collinear spins, optionally discretised, and the total charge and spin
multiplicity of the structure as one-hot codes (system conditioning). Every block
concatenates a neighbour's features to its r_ij in the geometry embedding L (so L
maps 3 + n_features -> d) and embeds the central atom's into its token."""

import torch


def discretized_spins(values: torch.Tensor) -> torch.Tensor:
    """App. C.3: (-inf, -0.25] -> -1, (-0.25, 0.25) -> 0, [0.25, inf) -> 1."""
    return (values >= 0.25).to(values.dtype) - (values <= -0.25).to(values.dtype)


class InputFeatures(torch.nn.Module):
    """``num_atomic`` per-atom scalars and, with ``conditioning``, the one-hot codes
    of the charge Q in [-max_charge, max_charge] and of the spin multiplicity in
    [1, max_multiplicity] of the atom's structure, as ``(n_atoms, num_features)``."""

    def __init__(
        self,
        num_atomic: int,
        discretize: bool,
        conditioning: bool,
        max_charge: int,
        max_multiplicity: int,
    ):
        super().__init__()
        self.discretize = discretize
        self.max_charge = max_charge
        self.max_multiplicity = max_multiplicity
        self.num_conditioning = (2 * max_charge + 1 + max_multiplicity) * int(
            conditioning
        )
        self.num_features = num_atomic + self.num_conditioning

    def forward(
        self,
        atomic: torch.Tensor,
        charges: torch.Tensor,
        multiplicities: torch.Tensor,
        structure_of_atom: torch.Tensor,
    ) -> torch.Tensor:
        """
        :param atomic: ``(n_atoms, num_atomic)`` the per-atom inputs
        :param charges: ``(n_systems,)`` integer total charges (unused without
            conditioning)
        :param multiplicities: ``(n_systems,)`` integer 2S + 1
        :param structure_of_atom: ``(n_atoms,)``
        """
        if self.discretize:
            atomic = discretized_spins(atomic)
        if self.num_conditioning == 0:
            return atomic
        self._check_range(charges, -self.max_charge, self.max_charge, "charge")
        self._check_range(multiplicities, 1, self.max_multiplicity, "spin_multiplicity")
        charge_codes = torch.nn.functional.one_hot(
            charges + self.max_charge, 2 * self.max_charge + 1
        )
        multiplicity_codes = torch.nn.functional.one_hot(
            multiplicities - 1, self.max_multiplicity
        )
        codes = torch.cat([charge_codes, multiplicity_codes], dim=1)
        return torch.cat([atomic, codes[structure_of_atom].to(atomic.dtype)], dim=1)

    def _check_range(
        self, values: torch.Tensor, low: int, high: int, name: str
    ) -> None:
        if values.numel() > 0 and bool(torch.any((values < low) | (values > high))):
            raise ValueError(
                f"input '{name}' must be in [{low}, {high}] for this model, got "
                f"values from {int(values.min())} to {int(values.max())}"
            )
