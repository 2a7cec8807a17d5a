"""Writing files without ever losing one: every model and checkpoint is written to a
temporary file beside its target and renamed over it only once complete (a kill or
a full disk leaves the old file as it was), and a command never writes over its own
input. Reading them back names the file when it is missing or not a whole archive
(a copy cut short)."""

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import metatomic.torch
import torch


def write_atomically(output: Union[str, Path], write: Callable[[str], None]) -> None:
    """Call ``write(path)`` on a temporary file in the folder of ``output``, then
    rename it to ``output`` (atomic on POSIX). The temporary name ends in ``.tmp``,
    so that globs for ``*.pt`` or ``*.ckpt`` never find a half-written file. The
    file gets the permissions ``open`` would give it: those of the file it
    replaces, or read-write as the umask allows (not the owner-only mode of a
    temporary file)."""
    target = Path(output).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _permissions(target)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    os.close(descriptor)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _permissions(target: Path) -> int:
    """Mode bits of ``target`` if it exists, else those of a new file under the
    process's umask."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    write_atomically(target, lambda path: model.save(path, collect_extensions=None))


Loaded = TypeVar("Loaded")

END_RECORD_SIZE = 22
"""Bytes of a zip archive's end-of-central-directory record without a comment."""


def read_archive(path: Union[str, Path], load: Callable[[str], Loaded]) -> Loaded:
    """``load(path)`` for a model or checkpoint file (a PyTorch zip archive),
    with an error naming the file when it does not exist or is not a whole
    archive (torch then says only ``[Errno 22] Invalid argument`` or ``failed
    finding central directory``).

    :raises FileNotFoundError: if ``path`` is not a file
    :raises ValueError: if ``load`` fails and ``path`` does not end as a whole
        zip archive does (other failures of ``load`` are raised as they are)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    try:
        return load(str(path))
    except Exception as error:  # torch and metatomic raise several kinds
        if _ends_as_a_zip_archive(path):
            raise
        raise ValueError(
            f"'{path}' is not a whole model or checkpoint file ({path.stat().st_size} "
            "bytes, not a complete zip archive): it was cut short or is another "
            "kind of file"
        ) from error


def load_exported_model(
    path: Union[str, Path], extensions: Optional[Union[str, Path]] = None
) -> metatomic.torch.AtomisticModel:
    """An exported metatomic model (with the TorchScript extensions in
    ``extensions``), read through :func:`read_archive`."""
    directory = None if extensions is None else str(extensions)
    return read_archive(
        path,
        lambda file: metatomic.torch.load_atomistic_model(
            file, extensions_directory=directory
        ),
    )


def _ends_as_a_zip_archive(path: Path) -> bool:
    """Whether the file ends with the end-of-central-directory record of a zip
    archive, as a whole PyTorch archive (written without a comment) does: a copy
    cut short does not, even when an archive stored inside it still looks whole
    to ``zipfile.is_zipfile``."""
    with open(path, "rb") as file:
        if file.seek(0, os.SEEK_END) < END_RECORD_SIZE:
            return False
        file.seek(-END_RECORD_SIZE, os.SEEK_END)
        return file.read(4) == b"PK\x05\x06"


def save_checkpoint(checkpoint: Any, output: Union[str, Path]) -> None:
    """``torch.save`` a training checkpoint to ``output``, atomically."""
    write_atomically(output, lambda path: torch.save(checkpoint, path))


class AtomisticModel(metatomic.torch.AtomisticModel):
    """metatomic's exported model, saved atomically (what ``mtt export`` calls).

    The class keeps metatomic's name, which is how metatomic and metatrain recognise
    an exported model once it is loaded back."""

    def save(
        self, file: Union[str, Path], collect_extensions: Optional[str] = None
    ) -> None:
        save = super().save
        write_atomically(file, lambda path: save(path, collect_extensions))
