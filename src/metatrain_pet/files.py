"""Writing model files without ever losing one: the output is written to a
temporary file beside it and renamed over it only once complete, and a command
never writes over its own input."""

import os
import tempfile
from pathlib import Path
from typing import Sequence


def save_model(model, output: str, inputs: Sequence[str] = ()) -> None:
    """``model.save`` (an exported metatomic model) to ``output``, atomically.

    :param inputs: files the command read; ``output`` may not be one of them
    :raises ValueError: if ``output`` is one of ``inputs``
    """
    target = Path(output).resolve()
    for path in inputs:
        if Path(path).resolve() == target:
            raise ValueError(
                f"the output {output} is the input model: choose another -o, the "
                "input is never overwritten"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".pt", dir=target.parent
    )
    os.close(descriptor)
    try:
        model.save(temporary, collect_extensions=None)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
