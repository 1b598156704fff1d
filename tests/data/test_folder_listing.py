"""How a local image folder is listed (``distgan.data.folder.image_files``), and that holding it in memory,
streaming it and packing it agree on the files, their order and their classes: through symlinked class
folders and symlinked files (each file keeps the path it was found at under the folder), past link cycles,
without hidden files and folders, and for a folder named by a ``file://`` URI. Real links, files and
timestamps in ``tmp_path``."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data import catalog, folder, pack_sources, shards
from distgan.data.tarshards import INDEX


def png(path: Path, level: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (10, 8), level).save(path)
    return path


@pytest.fixture
def pool(tmp_path) -> Path:
    """Two class folders of three distinct grey PNGs each, elsewhere on disk: what the tests link to."""
    for c, base in (("cats", 10), ("dogs", 110)):
        for i in range(3):
            png(tmp_path / "pool" / c / f"{i}.png", base + 10 * i)
    return tmp_path / "pool"


def agreed(root: Path, work: Path) -> tuple[list[str], tuple[str, ...], list[int]]:
    """The folder's (relative names, classes, labels), after checking that in memory, streamed and packed it
    holds the same files in the same order with the same classes; ``work`` takes the shards."""
    memory = DataConfig(path=str(root), resolution=8, stream=False)
    files = folder.image_files(memory)
    names = [p.relative_to(root.resolve()).as_posix() for p in files]
    classes = data.class_names(memory)
    labels = data.load_dataset(memory).labels
    labels = labels.tolist() if labels is not None else []

    streamed = catalog.catalog_at(str(root))
    assert streamed.relative_names() == names
    assert streamed.classes == classes
    assert (streamed.labels.tolist() if streamed.labels is not None else []) == labels
    assert data.class_names(DataConfig(path=str(root), stream=True)) == classes

    report = pack_sources.pack(root, work / "packed")
    packed = shards.open_shard_set(str(work / "packed"))
    assert report.samples == len(files) and packed.classes == classes
    assert (packed.labels.tolist() if packed.labels is not None else []) == labels
    assert [shards.read_sample(packed, i) for i in range(len(packed))] == [p.read_bytes() for p in files]
    checked = pack_sources.check(root)
    assert checked.ok and checked.samples == len(files) and checked.classes == classes
    return names, classes, labels


def test_a_linked_class_folder_is_a_class(pool, tmp_path):
    root = tmp_path / "linked"
    shutil.copytree(pool / "cats", root / "cats")
    (root / "dogs").symlink_to(pool / "dogs", target_is_directory=True)
    names, classes, labels = agreed(root, tmp_path)
    assert names == [f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(3)]
    assert classes == ("cats", "dogs") and labels == [0, 0, 0, 1, 1, 1]


def test_linked_files_keep_the_folder_they_were_found_in(pool, tmp_path):
    """Each class folder holds links into ``pool`` under other names, crossing classes: the class is where the
    link lies, not where it points, and two links of one name in two folders stay two files."""
    root = tmp_path / "links"
    for c, target in (("left", "dogs"), ("right", "cats")):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"x{i}.png").symlink_to(pool / target / f"{i}.png")
    names, classes, labels = agreed(root, tmp_path)
    assert names == [f"{c}/x{i}.png" for c in ("left", "right") for i in range(3)]
    assert classes == ("left", "right") and labels == [0, 0, 0, 1, 1, 1]
    files = folder.image_files(DataConfig(path=str(root)))
    assert files[0] == root.resolve() / "left" / "x0.png"  # as found, not resolved into the pool
    assert files[0].read_bytes() == (pool / "dogs" / "0.png").read_bytes()


def test_a_link_cycle_is_followed_once(pool, tmp_path):
    root = tmp_path / "cycle"
    shutil.copytree(pool, root)
    (root / "cats" / "again").symlink_to(root, target_is_directory=True)  # cats/again/cats/again/...
    (root / "dogs" / "self").symlink_to(root / "dogs", target_is_directory=True)
    names, classes, _ = agreed(root, tmp_path)
    assert names == [f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(3)] and classes == ("cats", "dogs")


def test_a_linked_root_lists_as_its_target(pool, tmp_path):
    (tmp_path / "alias").symlink_to(pool, target_is_directory=True)
    names, classes, _ = agreed(tmp_path / "alias", tmp_path)
    assert len(names) == 6 and classes == ("cats", "dogs")


def test_hidden_files_and_folders_are_ignored(pool, tmp_path):
    """A notebook's checkpoints folder is no class, and macOS's ``._`` AppleDouble files are no images."""
    root = tmp_path / "mac"
    shutil.copytree(pool, root)
    png(root / ".ipynb_checkpoints" / "0-checkpoint.png", 99)
    png(root / "cats" / ".hidden" / "deep.png", 98)
    (root / "cats" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (root / ".DS_Store").write_bytes(b"Bud1")
    names, classes, _ = agreed(root, tmp_path)
    assert names == [f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(3)] and classes == ("cats", "dogs")


def test_a_folder_inside_a_hidden_folder_is_read_when_named(pool, tmp_path):
    """Only names below the folder count: a data set kept under ``~/.cache`` is still read."""
    root = tmp_path / ".cache" / "set"
    shutil.copytree(pool, root)
    names, classes, _ = agreed(root, tmp_path)
    assert len(names) == 6 and classes == ("cats", "dogs")


def test_a_file_uri_names_a_folder_as_its_path_does(pool, tmp_path):
    uri = pool.as_uri()
    assert uri.startswith("file:///")
    memory = DataConfig(path=uri, resolution=8, stream=False)
    data.check(memory)
    assert data.class_names(memory) == ("cats", "dogs")
    assert data.load_dataset(memory).labels.tolist() == [0, 0, 0, 1, 1, 1]
    streamed = catalog.catalog_at(uri)
    assert streamed.classes == ("cats", "dogs") and streamed.name == "pool"
    assert streamed.relative_names() == catalog.catalog_at(str(pool)).relative_names()
    data.check(DataConfig(path=uri, resolution=8, stream=True))
    assert shards.check(uri).ok and pack_sources.check(uri).samples == 6
    assert pack_sources.pack(uri, tmp_path / "packed").samples == 6
    assert shards.open_shard_set((tmp_path / "packed").as_uri()).classes == ("cats", "dogs")


def test_file_times_a_tar_header_cannot_hold_are_clamped(pool, tmp_path):
    """ustar's time field holds 0 .. 8**11 - 1 seconds (1970 to 2242): a file from before or after is packed
    with the nearest time it can hold, not a traceback."""
    old, late = pool / "cats" / "0.png", pool / "dogs" / "2.png"
    os.utime(old, (0, -400 * 86400))  # 1968
    os.utime(late, (0, 2 ** 34))  # past 2242 (the file system may clamp it, still past)
    assert old.stat().st_mtime < 0 and late.stat().st_mtime > 8 ** 11
    report = pack_sources.pack(pool, tmp_path / "packed")
    assert report.samples == 6
    with tarfile.open(tmp_path / "packed" / "shard-000000.tar") as tar:
        times = {m.name: m.mtime for m in tar.getmembers()}
    assert times["000000.png"] == 0 and times["000005.png"] == 8 ** 11 - 1
    assert shards.check(tmp_path / "packed").ok


def test_packing_a_local_shard_set_says_what_it_is(pool, tmp_path):
    pack_sources.pack(pool, tmp_path / "packed")
    with pytest.raises(ConfigError, match=rf"SRC .*packed'? holds a shard set \({INDEX}\): pack reads an image "
                                          r"folder"):
        pack_sources.pack(tmp_path / "packed", tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_listing_order_compares_path_components(tmp_path):
    """``a/b.png`` before ``a-c.png``, as a URI's listing orders them: the local order did not change."""
    for name in ("a-c.png", "a/b.png", "a/z/y.png", "B.png"):
        png(tmp_path / "f" / name, 5)
    files = folder.image_files(DataConfig(path=str(tmp_path / "f")))
    assert [p.relative_to(tmp_path / "f").as_posix() for p in files] == ["B.png", "a/b.png", "a/z/y.png",
                                                                          "a-c.png"]
    assert np.all([p.is_absolute() for p in files])
