"""Write the inputs of the i-PI example into the current directory: ``init.xyz``
(the 64-water box of tests/data) and ``model.pt``, a tiny untrained PET exported
from metatrain-pet, unless a model path is given as first argument.

    python prepare.py [MODEL.pt]
"""

import shutil
import sys
from pathlib import Path

import ase.io
import torch
from metatrain.utils.architectures import get_default_hypers, import_architecture
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_energy_target_info

REPOSITORY = Path(__file__).resolve().parents[2]


def tiny_untrained_model():
    hypers = get_default_hypers("experimental.pet_ecse")["model"]
    hypers.update(
        d_pet=8,
        d_head=8,
        d_feedforward=8,
        num_heads=1,
        num_attention_layers=1,
        num_gnn_layers=1,
    )
    dataset_info = DatasetInfo(
        length_unit="Angstrom",
        atomic_types=[1, 6, 8],
        targets={
            "energy": get_energy_target_info(
                "energy", {"quantity": "energy", "unit": "eV"}
            )
        },
    )
    torch.manual_seed(0)
    model_class = import_architecture("experimental.pet_ecse").__model__
    return model_class(hypers, dataset_info).to(torch.float64).export()


def main():
    water = ase.io.read(REPOSITORY / "tests" / "data" / "water64_2.xyz", 0)
    water.calc = None
    ase.io.write("init.xyz", water)
    if len(sys.argv) > 1:
        shutil.copyfile(sys.argv[1], "model.pt")
    else:
        tiny_untrained_model().save("model.pt")


if __name__ == "__main__":
    main()
