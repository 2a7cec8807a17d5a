import os

import torch

torch.set_num_threads(int(os.environ.get("PET_TEST_THREADS", "2")))
