"""No file is lost when a process is killed while writing it (issue 18): ``mtt
export``, ``metatrain-pet ecse`` and the trainer's checkpoints write a temporary file
and rename it, so a SIGKILL in the middle of a write leaves the previous file as it
was and no half-written ``.pt``/``.ckpt`` for ``mtt train --restart auto`` to pick."""

import gzip
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CHECKPOINT = Path(__file__).parent / "checkpoints" / "model-v4_trainer-v2.ckpt.gz"

# writes half of the file the wrapped writer would have written, then kills the
# process with SIGKILL (no Python cleanup runs)
KILLED_HALF_WAY = """
import os, signal, sys, torch

def killed_half_way(write):
    def wrapper(obj, path, *args, **kwargs):
        write(obj, path, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as file:
            file.truncate(size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return wrapper

torch.save = killed_half_way(torch.save)
torch.jit.save = killed_half_way(torch.jit.save)
"""

EXPORT = """
from metatrain.cli.export import export_model
export_model(sys.argv[1], sys.argv[2])
"""

ECSE = """
from metatrain_pet.cli import main
main(["ecse", sys.argv[1], "-o", sys.argv[2]])
"""

SAVE_CHECKPOINT = """
from metatrain.utils.io import model_from_checkpoint, trainer_from_checkpoint
checkpoint = torch.load(sys.argv[1], weights_only=False)
model = model_from_checkpoint(checkpoint, context="restart")
trainer = trainer_from_checkpoint(checkpoint, "restart", checkpoint["train_hypers"])
trainer.save_checkpoint(model, sys.argv[2])
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "model.ckpt"
    with gzip.open(CHECKPOINT) as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def _run(script: str, *args: Path, killed: bool) -> subprocess.CompletedProcess:
    prefix = KILLED_HALF_WAY if killed else "import sys, torch\n"
    return subprocess.run(
        [sys.executable, "-c", prefix + script, *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "script, source, name",
    [(EXPORT, "ckpt", "model.pt"), (SAVE_CHECKPOINT, "ckpt", "restart.ckpt"),
     (ECSE, "pt", "ecse.pt")],
    ids=["mtt-export", "trainer-checkpoint", "metatrain-pet-ecse"],
)  # fmt: skip
def test_a_kill_during_a_write_keeps_the_previous_file(
    checkpoint, tmp_path, script, source, name
):
    if source == "pt":
        exported = tmp_path / "raw.pt"
        assert _run(EXPORT, checkpoint, exported, killed=False).returncode == 0
        source_file = exported
    else:
        source_file = checkpoint
    output = tmp_path / name
    first = _run(script, source_file, output, killed=False)
    assert first.returncode == 0, first.stderr
    good = output.read_bytes()

    killed = _run(script, source_file, output, killed=True)
    assert killed.returncode == -9, killed.stderr
    assert output.read_bytes() == good
    written = {p.name for p in tmp_path.glob(f"*{output.suffix}")}
    assert written - {source_file.name} == {name}
    # the half-written temporary the kill left behind
    assert [p.suffix for p in tmp_path.glob(f".{name}.*")] == [".tmp"]


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    """A model or checkpoint is readable by whoever could read a file written by
    ``open`` (umask 022: 0644), not owner-only like the temporary file it was
    written to; a replaced file keeps its own permissions."""
    from metatrain_pet.files import write_atomically

    def write(path):
        Path(path).write_bytes(b"model")

    previous = os.umask(0o022)
    try:
        new = tmp_path / "model.pt"
        write_atomically(new, write)
        assert stat.S_IMODE(new.stat().st_mode) == 0o644

        kept = tmp_path / "kept.ckpt"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        write_atomically(kept, write)
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
        assert kept.read_bytes() == b"model"
    finally:
        os.umask(previous)


def test_a_file_cut_short_is_named_when_read(checkpoint, tmp_path, capsys):
    """A model or checkpoint copied only in part used to stop the commands with
    torch's ``[Errno 22] Invalid argument`` or a miniz error naming no file."""
    from metatrain.cli.export import export_model

    from metatrain_pet.cli import main

    model = tmp_path / "model.pt"
    export_model(str(checkpoint), str(model))
    cut = {}
    for path in (checkpoint, model):
        cut[path.suffix] = tmp_path / f"cut{path.suffix}"
        cut[path.suffix].write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    structures = Path(__file__).parent / "data" / "ethanol_40.xyz"
    commands = [
        ["ecse", cut[".ckpt"], "-o", tmp_path / "a.pt"],
        ["ecse", cut[".pt"], "-o", tmp_path / "b.pt"],
        ["ensemble", model, cut[".ckpt"], "-o", tmp_path / "c.pt"],
        ["symmetry-report", cut[".pt"], structures],
    ]
    for command in commands:
        assert main([str(part) for part in command]) == 1
        error = capsys.readouterr().err
        assert "is not a whole model or checkpoint file" in error, error
        assert str(tmp_path / "cut.") in error
    assert not any((tmp_path / name).exists() for name in ("a.pt", "b.pt", "c.pt"))


def test_a_whole_archive_keeps_the_loader_error(tmp_path):
    import zipfile

    import torch

    from metatrain_pet.files import read_archive

    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(Exception) as error:
        read_archive(path, lambda file: torch.load(file, weights_only=False))
    assert "is not a whole model" not in str(error.value)
