"""``distgan import-weights``: released RRDBNet state dicts, built here by hand from the published naming
schemes (small widths, no download), become distgan generators that compute what the published network
computes; bad files are refused, naming what is wrong."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from distgan.config import ConfigError, load_config
from distgan.persist.export import check_init_from, load_generator
from distgan.persist.import_weights import import_weights

from published_weights import (BLOCKS, GROWTH, WIDTH, basicsr_rrdbnet, esrgan_names, esrgan_old_names,
                               reference_forward)


def test_params_ema_is_preferred_and_the_import_computes_the_published_network(tmp_path):
    ema, raw = basicsr_rrdbnet(seed=1), basicsr_rrdbnet(seed=2)
    torch.save({"params": raw, "params_ema": ema}, tmp_path / "RealESRGAN_tiny.pth")
    done = import_weights(tmp_path / "RealESRGAN_tiny.pth", "rrdb", tmp_path / "g")
    assert (done.layout, done.used) == ("basicsr", "params_ema")
    assert any("using params_ema" in note for note in done.notes)
    g, meta = load_generator(tmp_path / "g")
    assert {k: meta["model"][k] for k in ("family", "g_width", "blocks", "growth", "scale")} == {
        "family": "rrdb", "g_width": WIDTH, "blocks": BLOCKS, "growth": GROWTH, "scale": 4}
    assert meta["imported_from"]["used"] == "params_ema" and len(meta["imported_from"]["sha256"]) == 64

    # The mapped weights: the trunk's equal the file's, the first and last convs carry the range fold.
    mine = g.state_dict()
    assert all(torch.equal(mine[k], ema[k]) for k in ema if not k.startswith(("conv_first", "conv_last")))
    assert torch.allclose(mine["conv_first.weight"], ema["conv_first.weight"] / 2)
    assert torch.allclose(mine["conv_last.bias"], 2 * ema["conv_last.bias"] - 1)

    # The outputs: G on [-1, 1] equals the published forward on [0, 1], borders included (the first conv
    # pads with black, as the published one does).
    x01 = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = (g(x01 * 2 - 1) + 1) / 2
        theirs = reference_forward(ema, x01)
    assert ours.shape == (1, 3, 96, 80)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert not torch.allclose(ours, reference_forward(raw, x01), atol=1e-3)  # not the non-EMA weights


@pytest.mark.parametrize("layout, rename", [("basicsr", lambda s: s), ("esrgan", esrgan_names),
                                            ("esrgan-old", esrgan_old_names)])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_every_published_spelling_gives_the_same_generator(tmp_path, layout, rename, suffix):
    state = basicsr_rrdbnet(seed=4)
    path = tmp_path / f"model{suffix}"
    if suffix == ".pth":
        torch.save(rename(state), path)
    else:
        save_file(rename(state), str(path))
    done = import_weights(path, "rrdb", tmp_path / "g", scale=4)
    assert (done.layout, done.used) == (layout, "(bare)")
    torch.save({"params": state}, tmp_path / "reference.pth")
    import_weights(tmp_path / "reference.pth", "rrdb", tmp_path / "ref")
    ours, ref = load_generator(tmp_path / "g")[0].state_dict(), load_generator(tmp_path / "ref")[0].state_dict()
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)


def test_an_imported_generator_is_accepted_by_train_init_from(tmp_path):
    torch.save({"params_ema": basicsr_rrdbnet(blocks=1, stages=1)}, tmp_path / "x2.pth")
    import_weights(tmp_path / "x2.pth", "rrdb", tmp_path / "g")
    cfg = load_config(None, ("model.family=rrdb", "model.scale=2", f"model.g_width={WIDTH}", "model.blocks=1",
                             f"model.growth={GROWTH}", "data.name=photos", "data.channels=3",
                             "data.resolution=64", f"train.init_from={tmp_path / 'g'}"))
    check_init_from(cfg)  # raises on a mismatch
    with pytest.raises(ConfigError, match="model.blocks 2"):
        check_init_from(load_config(None, (*[f"{k}={v}" for k, v in (("model.family", "rrdb"), ("model.scale", 2),
                        ("model.g_width", WIDTH), ("model.blocks", 2), ("model.growth", GROWTH))],
                        f"train.init_from={tmp_path / 'g'}")))


class NotATensor:
    """Anything a pickle can name: a full unpickle would construct it (and could run code doing so)."""


def _bad(state: dict, **changes) -> dict:
    state = dict(state)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    return state


@pytest.mark.parametrize("payload, family, needle", [
    ("pickle", "rrdb", "refusing to unpickle other objects"),
    (_bad(basicsr_rrdbnet(), body__1__rdb2__conv3__weight=torch.zeros(4, 15, 3, 3)), "rrdb",
     "wrong shape body.1.rdb2.conv3.weight (4, 15, 3, 3) (want (4, 16, 3, 3))"),
    (_bad(basicsr_rrdbnet(), body__0__rdb3__conv5__bias=None), "rrdb", "missing body.0.rdb3.conv5.bias"),
    (_bad(esrgan_names(basicsr_rrdbnet()), HRconv__weight=None), "rrdb", "missing HRconv.weight"),
    (_bad(basicsr_rrdbnet(), extra__weight=torch.zeros(1)), "rrdb", "unexpected extra.weight"),
    ({"generator.0.weight": torch.zeros(1)}, "rrdb", "unknown key layout (first keys: generator.0.weight)"),
    ({"state_dict": basicsr_rrdbnet()}, "rrdb", "unknown key layout: top-level 'state_dict' holds dicts"),
    (basicsr_rrdbnet(in_ch=12), "rrdb", "pixel-unshuffle model (Real-ESRGAN's x2plus"),
    ({"conv_first.weight": torch.zeros(8, 3, 3, 3), "body.0.conv1.weight": torch.zeros(8, 8, 3, 3),
      "upconv1.weight": torch.zeros(32, 8, 3, 3)}, "srresnet", "MSRResNet is another network"),
    (basicsr_rrdbnet(), "srresnet", "use --family rrdb"),
])
def test_bad_files_are_refused_naming_the_problem_and_the_file(tmp_path, payload, family, needle):
    path = tmp_path / "bad.pth"
    if payload == "pickle":
        torch.save({"conv_first.weight": torch.zeros(1), "note": NotATensor()}, path)
    else:
        torch.save(payload, path)
    with pytest.raises(ConfigError) as caught:
        import_weights(path, family, tmp_path / "g")
    assert needle in str(caught.value) and str(path) in str(caught.value)
    assert not (tmp_path / "g").exists()


def test_a_scale_other_than_the_files_is_refused_and_an_existing_export_kept(tmp_path):
    torch.save(basicsr_rrdbnet(), tmp_path / "x4.pth")
    with pytest.raises(ConfigError, match=r"--scale 2: .*upscales x4"):
        import_weights(tmp_path / "x4.pth", "rrdb", tmp_path / "g", scale=2)
    import_weights(tmp_path / "x4.pth", "rrdb", tmp_path / "g")
    with pytest.raises(ConfigError, match="already holds a generator"):
        import_weights(tmp_path / "x4.pth", "rrdb", tmp_path / "g")
    # --out naming a file (the weights themselves, say) is refused before anything is read or written.
    before = (tmp_path / "x4.pth").read_bytes()
    with pytest.raises(ConfigError, match=r"--out '.*x4\.pth' is a file; give a directory"):
        import_weights(tmp_path / "x4.pth", "rrdb", tmp_path / "x4.pth")
    assert (tmp_path / "x4.pth").read_bytes() == before


def test_tiles_of_an_imported_generator_join_exactly(tmp_path):
    """The black padding of the first conv is applied per tile too, and tiles keep only their own output."""
    from distgan.tasks.super_resolution.upscale import upscale_tensor

    torch.save(basicsr_rrdbnet(blocks=1, stages=1), tmp_path / "x2.pth")
    import_weights(tmp_path / "x2.pth", "rrdb", tmp_path / "g")
    g, _ = load_generator(tmp_path / "g")
    lr = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(5)) * 2 - 1
    whole = upscale_tensor(g, lr, 2)
    assert torch.allclose(upscale_tensor(g, lr, 2, tile=12, overlap=20), whole, atol=1e-5)
    # What the padding is for: with distgan's zero (grey) padding the border pixels change.
    zero_padded = load_generator(tmp_path / "g")[0]
    zero_padded.conv_first._forward_pre_hooks.clear()
    zero_padded.conv_first.padding = (1, 1)
    assert not torch.allclose(upscale_tensor(zero_padded, lr, 2), whole, atol=1e-3)
