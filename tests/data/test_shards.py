"""Sharded archives (``distgan.data.shards``): pack a folder into WebDataset-layout tar shards + index.json, open
them cheaply, read one sample with one ranged read, check them in full; and every kind of bad input named.
Folders are small and made here with PIL; the S3 cases run on moto's server on 127.0.0.1 (``s3_server``)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distgan.config import ConfigError, DataConfig
from distgan.data import folder, packing, shards, tarshards
from distgan.data.shards import INDEX, ShardError, TruncatedShard


def make_folder(root: Path, per_class: int = 6, classes=("cat", "dog")) -> Path:
    """``classes`` sub-folders of small JPEGs and PNGs of varying heights (24..27 px), 32 px wide."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (24 + i % 4, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"im{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture
def src(tmp_path) -> Path:
    return make_folder(tmp_path / "src")


@pytest.fixture
def packed(src, tmp_path) -> Path:
    shards.pack(src, tmp_path / "shards", samples_per_shard=5)
    return tmp_path / "shards"


def test_a_pack_holds_the_folder_in_order_with_its_labels(src, packed):
    files = folder.image_files(DataConfig(path=str(src)))
    lines: list[str] = []
    shards.pack(src, packed.parent / "again", samples_per_shard=5, progress=lines.append)
    assert len(lines) == 3 and all("verified" in line for line in lines)
    assert sorted(p.name for p in packed.iterdir()) == [INDEX, "shard-000000.tar", "shard-000001.tar",
                                                         "shard-000002.tar"]
    s = shards.open_shard_set(str(packed))
    assert len(s) == len(files) == 12 and s.classes == ("cat", "dog")
    assert s.labels.tolist() == [0] * 6 + [1] * 6 and s.shard_of.tolist() == [0] * 5 + [1] * 5 + [2] * 2
    assert s.offsets.dtype == np.int64 and s.shard_of.dtype == np.int32
    for i, path in enumerate(files):  # the bytes are the file's, unchanged
        assert shards.read_sample(s, i) == path.read_bytes()
    assert s.describe(7) == f"{packed}/shard-000001.tar:000007.png"
    # The same folder packs to the same bytes (member times come from the files): shards are reproducible.
    assert (packed / "shard-000001.tar").read_bytes() == (packed.parent / "again" / "shard-000001.tar").read_bytes()


def test_webdataset_and_tarfile_read_the_shards(src, packed):
    import webdataset as wds

    files = folder.image_files(DataConfig(path=str(src)))
    urls = [str(p) for p in sorted(packed.glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(12)]
    for s, path in zip(samples, files):
        ext = path.suffix[1:]
        assert s[ext] == path.read_bytes()
        assert int(s["cls"]) == (0 if path.parent.name == "cat" else 1)
    with tarfile.open(urls[0]) as tar:
        assert tar.getnames()[:4] == ["000000.jpg", "000000.cls", "000001.png", "000001.cls"]
    decoded = next(iter(wds.WebDataset(urls, shardshuffle=False).decode("pil")))
    assert decoded["jpg"].size == (32, 24)


def test_an_unlabelled_folder_packs_without_classes(tmp_path):
    root = make_folder(tmp_path / "src", per_class=3, classes=("only",))
    shards.pack(root, tmp_path / "out")
    s = shards.open_shard_set(str(tmp_path / "out"))
    assert s.classes == () and s.labels is None and len(s) == 3
    with tarfile.open(tmp_path / "out" / "shard-000000.tar") as tar:
        assert not [n for n in tar.getnames() if n.endswith(".cls")]


def test_a_shard_set_pickles_small_and_reads_in_a_fresh_process(packed, monkeypatch):
    s = shards.open_shard_set(str(packed))
    expected = shards.read_sample(s, 11)
    blob = pickle.dumps(s)
    assert len(blob) < 4000  # numbers and names only: no open file or file system travels with it
    # A Ray task unpickles it in another process: nothing cached there yet.
    monkeypatch.setattr(shards, "_handles", type(shards._handles)())
    monkeypatch.setattr(shards, "_filesystems", {})
    assert shards.read_sample(pickle.loads(blob), 11) == expected


def test_threads_read_one_shard_set_at_once(packed, monkeypatch):
    """Decoding tasks may read from threads: the per-process handles are shared, and ranged reads do not
    move a shared file position."""
    from concurrent.futures import ThreadPoolExecutor

    s = shards.open_shard_set(str(packed))
    expected = [shards.read_sample(s, i) for i in range(len(s))]
    monkeypatch.setattr(shards, "MAX_OPEN", 2)  # handles evicted while other threads still read them
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: shards.read_sample(s, i % len(s)), range(20 * len(s))))
    assert got == expected * 20


def test_an_unreadable_source_file_is_named_and_nothing_is_written(src, tmp_path):
    (src / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ConfigError, match="--skip-corrupt") as err:
        shards.pack(src, tmp_path / "out")
    assert "broken.jpg" in str(err.value)
    assert not (tmp_path / "out").exists()
    report = shards.pack(src, tmp_path / "out", skip_corrupt=True)
    assert report.samples == 12 and report.files == 13
    assert [Path(name).name for name, _ in report.skipped] == ["broken.jpg"]
    assert "skipped 1 unreadable image" in report.render() and "broken.jpg" in report.render()


def test_a_failed_pack_leaves_no_shard_or_index(src, tmp_path, monkeypatch):
    real = packing.verify_shard
    calls = []

    def failing_second(raw, entry, where, probe=None):
        calls.append(entry.name)
        verdict = real(raw, entry, where, probe)
        if len(calls) == 2:
            verdict.problems.append(f"{where}: simulated corruption in the store")
        return verdict

    monkeypatch.setattr(packing, "verify_shard", failing_second)
    with pytest.raises(ShardError, match="shard-000001.tar: failed verification"):
        shards.pack(src, tmp_path / "out", samples_per_shard=4)
    assert list((tmp_path / "out").iterdir()) == []  # neither shards, nor temporaries, nor an index

    monkeypatch.setattr(packing, "verify_shard", real)
    reads = {"n": 0}
    read_bytes = Path.read_bytes

    def interrupted(self):
        reads["n"] += 1
        if reads["n"] == 7:
            raise KeyboardInterrupt  # mid-shard: a temporary file is open
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shards.pack(src, tmp_path / "out", samples_per_shard=4)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_destination_holding_a_shard_set_is_refused(src, packed):
    with pytest.raises(ConfigError, match="already holds index.json"):
        shards.pack(src, packed)


def test_a_missing_index_is_named(src):
    with pytest.raises(ConfigError, match=f"holds no {INDEX}") as err:
        shards.open_shard_set(str(src))
    assert str(err.value).startswith(f"data.path {str(src)!r}")
    with pytest.raises(ConfigError, match="does not exist"):
        shards.open_shard_set(str(src / "nowhere"), key="data.val_path")


def test_a_missing_shard_is_named(packed):
    (packed / "shard-000001.tar").unlink()
    with pytest.raises(ConfigError, match="shard shard-000001.tar is missing") as err:
        shards.open_shard_set(str(packed))
    assert str(err.value).startswith("data.path ")


def test_a_size_mismatch_is_named(packed):
    with open(packed / "shard-000002.tar", "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(ConfigError, match=r"shard shard-000002.tar has \d+ bytes, index.json says \d+"):
        shards.open_shard_set(str(packed))


def _edit_index(packed: Path, edit) -> None:
    doc = json.loads((packed / INDEX).read_text())
    edit(doc)
    (packed / INDEX).write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["shards"][0].update(offsets=[o + 1 for o in d["shards"][0]["offsets"]]), "mis-packed"),
    (lambda d: d["shards"][1]["offsets"].reverse(), "mis-packed"),
    (lambda d: d["shards"][0].update(keys=[], exts=[], offsets=[], sizes=[], labels=[], samples=0), "is empty"),
    (lambda d: d["shards"][0].update(name="../elsewhere.tar"), "not a shard file name"),
    (lambda d: d["shards"][0]["labels"].__setitem__(0, 7), "labels must be"),
    (lambda d: d.update(version=99), "index version 99"),
    (lambda d: d.update(shards=[]), "lists no shards"),
    (lambda d: d["shards"][0]["keys"].__setitem__(0, "a.b"), "a key is not"),
    (lambda d: d["shards"][0]["exts"].__setitem__(0, ["jpg"]), "an extension is not"),
    (lambda d: d["shards"][2].update(sha256="beef"), "not 64 hex digits"),
], ids=["offsets", "order", "empty", "traversal", "label", "version", "no-shards", "key", "ext", "sha"])
def test_a_mis_packed_index_is_named(packed, edit, message):
    _edit_index(packed, edit)
    with pytest.raises(ConfigError, match=message) as err:
        shards.open_shard_set(str(packed))
    assert "data.path" in str(err.value) and "index.json" in str(err.value)


def test_a_truncated_shard_names_the_shard_and_the_member(packed):
    s = shards.open_shard_set(str(packed))  # opened first: the shard is cut short while a run streams it
    path = packed / "shard-000001.tar"
    path.write_bytes(path.read_bytes()[:int(s.offsets[8]) + 10])
    assert shards.read_sample(s, 7)  # before the cut: still readable
    with pytest.raises(TruncatedShard, match="truncated") as err:
        shards.read_sample(s, 8)
    assert "shard-000001.tar:000008.jpg" in str(err.value) and isinstance(err.value, OSError)
    with pytest.raises(ConfigError, match="shard shard-000001.tar has"):
        shards.check(str(packed))  # the index no longer matches: named before any reading


def test_a_replaced_shard_is_caught_by_the_header_check_and_by_check(packed, tmp_path):
    s = shards.open_shard_set(str(packed))
    a, b = packed / "shard-000000.tar", packed / "shard-000001.tar"
    original = a.read_bytes()
    a.write_bytes(b.read_bytes())  # same size, other members: a shard swapped after packing
    with pytest.raises(ShardError, match="replaced or mis-packed") as err:
        shards.read_sample(pickle.loads(pickle.dumps(s)), 0)
    assert "shard-000000.tar:000000.jpg" in str(err.value)
    report = shards.check(str(packed))
    assert not report.ok and any("sha256" in p or "offset" in p for p in report.problems)
    assert "PROBLEMS FOUND" in report.render()
    a.write_bytes(original)


def test_check_reads_a_shard_set_through(packed):
    report = shards.check(str(packed))
    assert report.ok, report.problems
    assert (report.kind, report.samples, report.shards, report.classes) == ("shards", 12, 3, ("cat", "dog"))
    assert report.class_counts == [6, 6] and report.heights == (24, 27) and report.widths == (32, 32)
    assert report.bytes == sum(p.stat().st_size for p in packed.glob("*.tar"))


def test_check_names_an_image_in_a_shard_that_does_not_decode(tmp_path):
    """A shard written by hand (the format's own writer) holding a JPEG cut short."""
    good = io.BytesIO()
    Image.new("RGB", (20, 10), (9, 9, 9)).save(good, "PNG")
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 10), (9, 9, 9)).save(jpeg, "JPEG")
    out = tmp_path / "set"
    out.mkdir()
    with open(out / "s-000000.tar", "wb") as f:
        writer = tarshards.ShardWriter(f)
        offsets = [writer.add("a.png", good.getvalue(), 0), writer.add("b.jpg", jpeg.getvalue()[:-40], 0)]
        size, sha = writer.finish()
    entry = tarshards.ShardEntry("s-000000.tar", size, sha, ["a", "b"], ["png", "jpg"], np.array(offsets),
                                 np.array([len(good.getvalue()), len(jpeg.getvalue()) - 40]))
    (out / INDEX).write_bytes(tarshards.encode_index((), [entry]))
    report = shards.check(str(out))
    assert [name for name, _ in report.unreadable] == [f"{out}/s-000000.tar:b.jpg"]
    assert report.heights == (10, 10) and not report.problems and not report.ok


def test_check_reports_a_folder(src):
    (src / "dog" / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = shards.check(str(src))
    assert (report.kind, report.samples, report.classes, report.class_counts) == ("folder", 13, ("cat", "dog"), [6, 7])
    assert report.heights == (24, 27) and [Path(n).name for n, _ in report.unreadable] == ["zz_bad.png"]
    assert not report.ok and "zz_bad.png" in report.render()
    assert json.loads(json.dumps(report.to_dict()))["unreadable"][0]["name"].endswith("zz_bad.png")


# -- on an object store ----------------------------------------------------------------------------------

@pytest.fixture
def bucket_uri(s3_server, request):
    import boto3

    bucket = "shards-" + request.node.name.lower().replace("_", "-")[:40]
    boto3.client("s3", endpoint_url=f"http://{s3_server}").create_bucket(Bucket=bucket)
    return lambda prefix: f"s3://{bucket}/{prefix}?endpoint_override={s3_server}&scheme=http"


def test_a_shard_set_in_a_bucket_packs_opens_reads_and_checks(src, bucket_uri, monkeypatch):
    uri = bucket_uri("data/faces")
    report = shards.pack(src, uri, samples_per_shard=8)
    assert report.dest == uri.split("?")[0] and len(report.shards) == 2
    s = shards.open_shard_set(uri)
    monkeypatch.setattr(shards, "_handles", type(shards._handles)())  # a fresh process's caches
    monkeypatch.setattr(shards, "_filesystems", {})
    files = folder.image_files(DataConfig(path=str(src)))
    assert [shards.read_sample(s, i) for i in (0, 9)] == [files[0].read_bytes(), files[9].read_bytes()]
    assert s.describe(9) == f"{uri.split('?')[0]}/shard-000001.tar:000009.png"
    assert shards.check(uri).ok
    with pytest.raises(ConfigError, match="already holds"):
        shards.pack(src, uri)


def test_bad_data_uris_are_named(bucket_uri, src):
    with pytest.raises(ConfigError, match="credentials in the URI") as err:
        shards.open_shard_set("s3://AKIAEXAMPLE:s3cr3t@bucket/data")
    assert str(err.value).startswith("data.path ") and "s3cr3t" not in str(err.value)
    with pytest.raises(ConfigError, match="'s3://.*/empty' does not exist: a shard set is a directory"):
        shards.open_shard_set(bucket_uri("empty"))
    with pytest.raises(ConfigError, match="a folder under a URI is read by distgan.data.pack_sources"):
        shards.check(bucket_uri("empty"))  # shards.check reads local folders; pack_sources.check reads this
