"""``distgan data pack`` and ``distgan data check``, in-process: what they print and their exit codes
(0 fine, 1 problems found, 2 a bad argument), for local folders and for folders in a bucket (the suite's local
S3 server)."""

from __future__ import annotations

import json
import time

from distgan.cli import main as cli_main
from data.test_pack_sources import upload
from data.test_shards import make_folder


def test_pack_then_check_print_what_they_wrote_and_found(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=3)
    (src / "cat" / "broken.png").write_bytes(b"not a png")
    dest = tmp_path / "shards"

    assert cli_main(["data", "pack", str(src), str(dest), "--per-shard", "4"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-corrupt" in err and not dest.exists()

    assert cli_main(["data", "pack", str(src), str(dest), "--per-shard", "4", "--skip-corrupt"]) == 0
    out = capsys.readouterr().out
    assert out.count(", verified\n") == 2 and f"packed 6 of 7 images from {src} into 2 shards" in out
    assert "skipped 1 unreadable image" in out and "broken.png" in out and "2 classes: cat, dog" in out

    assert cli_main(["data", "check", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"shards {dest}: 2 shards, 6 samples" in out and "classes: 2 (cat 3, dog 3)" in out
    assert out.rstrip().splitlines()[-1].startswith("OK")

    assert cli_main(["data", "check", str(dest), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] and found["samples"] == 6 and found["heights"] == [24, 26]


def test_check_exits_1_naming_the_problem(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=2)
    (src / "dog" / "cut.jpg").write_bytes((src / "dog" / "im00.jpg").read_bytes()[:200])
    assert cli_main(["data", "check", str(src)]) == 1
    captured = capsys.readouterr()
    assert "PROBLEMS FOUND" in captured.out and "cut.jpg" in captured.out
    assert "1 unreadable image(s); first: " in captured.err and "cut.jpg" in captured.err

    assert cli_main(["data", "pack", str(src), str(tmp_path / "s"), "--skip-corrupt"]) == 0
    shard = tmp_path / "s" / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # one flipped byte inside the first image: same size, so only a full check sees it
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli_main(["data", "check", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "shard-000000.tar: sha256" in err and "differs from the index" in err


def test_bad_arguments_exit_2_naming_them(tmp_path, capsys):
    assert cli_main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert f"PATH {str(tmp_path / 'nowhere')!r} does not exist" in capsys.readouterr().err
    assert cli_main(["data", "pack", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "SRC " in capsys.readouterr().err
    assert cli_main(["data", "check", "s3://KEY:SECRET@bucket/data"]) == 2
    err = capsys.readouterr().err
    assert "PATH 's3://***@bucket/data': credentials in the URI" in err and "SECRET" not in err
    src = make_folder(tmp_path / "src", per_class=1)
    assert cli_main(["data", "pack", str(src), str(tmp_path / "o"), "--per-shard", "0"]) == 2
    assert "--per-shard: must be >= 1" in capsys.readouterr().err


def test_a_folder_in_a_bucket_checks_and_packs_as_a_local_one(tmp_path, s3_server, capsys):
    src = make_folder(tmp_path / "src", per_class=3)
    (src / "dog" / "cut.jpg").write_bytes((src / "dog" / "im00.jpg").read_bytes()[:200])
    uri = upload(src, s3_server, "cli-data-folder", "photos")
    shown = "s3://cli-data-folder/photos"

    assert cli_main(["data", "check", uri]) == 1
    captured = capsys.readouterr()
    assert f"folder {shown}: 7 image files" in captured.out and "classes: 2 (cat 3, dog 4)" in captured.out
    assert "PROBLEMS FOUND" in captured.out and f"{shown}/dog/cut.jpg" in captured.out
    assert f"{shown}: 1 unreadable image(s); first: {shown}/dog/cut.jpg: " in captured.err
    assert "endpoint_override" not in captured.out + captured.err

    dest = uri.replace("/photos?", "/packed?")
    assert cli_main(["data", "pack", uri, dest, "--per-shard", "4"]) == 2
    assert f"cannot read image '{shown}/dog/cut.jpg'" in capsys.readouterr().err
    assert cli_main(["data", "pack", uri, dest, "--per-shard", "4", "--skip-corrupt"]) == 0
    out = capsys.readouterr().out
    assert "wrote s3://cli-data-folder/packed/shard-000001.tar: 2 samples" in out
    assert f"packed 6 of 7 images from {shown} into 2 shards" in out and f"  {shown}/dog/cut.jpg: " in out
    assert cli_main(["data", "check", dest, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["kind"], found["samples"], found["class_counts"]) == ("shards", 6, [3, 3])


def test_a_bucket_source_that_cannot_be_used_exits_2_naming_it(tmp_path, s3_server, capsys):
    down = "s3://bucket/photos?endpoint_override=127.0.0.1:9&scheme=http"  # nothing listens on port 9
    started = time.monotonic()
    assert cli_main(["data", "check", down]) == 2
    err = capsys.readouterr().err
    assert "PATH 's3://bucket/photos' cannot be reached: " in err and "credentials where its client looks" in err
    assert time.monotonic() - started < 30
    assert cli_main(["data", "pack", "s3://KEY:SECRET@bucket/photos", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "SRC 's3://***@bucket/photos': credentials in the URI" in err and "SECRET" not in err
    (tmp_path / "nothing-here").mkdir()
    empty = upload(tmp_path / "nothing-here", s3_server, "cli-data-empty", "photos")
    assert cli_main(["data", "pack", empty, str(tmp_path / "out")]) == 2
    assert "SRC 's3://cli-data-empty/photos': no PNG/JPEG images found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_trailing_slash_is_not_doubled_in_what_is_printed(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=2)
    dest = tmp_path / "ts"
    assert cli_main(["data", "pack", f"{src}/", f"{dest}/", "--per-shard", "2"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {dest}/shard-000000.tar: 2 samples" in out and f"index: {dest}/index.json" in out
    assert "//" not in out

    shard = dest / "shard-000001.tar"
    damaged = bytearray(shard.read_bytes())
    damaged[700] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    assert cli_main(["data", "check", f"{dest}/"]) == 1
    captured = capsys.readouterr()
    assert f"{dest}/shard-000001.tar: sha256" in captured.err and "//" not in captured.out + captured.err


def test_a_file_uri_folder_checks_and_packs_as_its_path_does(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=2)
    assert cli_main(["data", "check", src.as_uri()]) == 0
    assert "classes: 2 (cat 2, dog 2)" in capsys.readouterr().out
    assert cli_main(["data", "pack", src.as_uri(), str(tmp_path / "packed")]) == 0
    assert "packed 4 of 4 images" in capsys.readouterr().out


def test_packing_a_local_shard_set_exits_2_saying_what_it_is(tmp_path, capsys):
    src = make_folder(tmp_path / "src", per_class=2)
    assert cli_main(["data", "pack", str(src), str(tmp_path / "packed")]) == 0
    capsys.readouterr()
    assert cli_main(["data", "pack", str(tmp_path / "packed"), str(tmp_path / "again")]) == 2
    assert "holds a shard set (index.json): pack reads an image folder" in capsys.readouterr().err
