"""Write the inputs of the i-PI example into the current directory: ``init.xyz``
(the 64-water box of tests/data) and ``model.pt``, a tiny untrained PET exported
from metatrain-pet, unless a model path is given as first argument.

    python prepare.py [MODEL.pt]
"""

import shutil
import sys
from pathlib import Path

import ase.io

from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model

REPOSITORY = Path(__file__).resolve().parents[2]


def main():
    water = ase.io.read(REPOSITORY / "tests" / "data" / "water64_2.xyz", 0)
    water.calc = None
    ase.io.write("init.xyz", water)
    if len(sys.argv) > 1:
        shutil.copyfile(sys.argv[1], "model.pt")
    else:
        untrained_energy_model(**TINY_SIZES).export().save("model.pt")


if __name__ == "__main__":
    main()
