import os
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"

torch.set_num_threads(int(os.environ.get("PET_TEST_THREADS", "2")))
