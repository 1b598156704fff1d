"""``distgan data pack`` and ``distgan data check``, in-process: what they print and their exit codes
(0 fine, 1 problems found, 2 a bad argument)."""

from __future__ import annotations

import json

from distgan.cli import main as cli_main
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
