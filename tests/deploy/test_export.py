"""``distgan export`` / ``distgan.export``: every registered model family as ONNX and TorchScript, equal to
PyTorch within the stated tolerance at batch 1 and 3 (and a second image size for super-resolution), checked
here independently of the export's own check; a failing check writes nothing."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

import distgan
from distgan import models
from distgan.cli import build_parser
from distgan.cli import main as cli_main
from distgan.config import ConfigError, ModelConfig
from distgan.deploy import TOLERANCE, ExportCheckFailed, check_export, max_abs_difference, signature, write_checked
from distgan.persist.export import load_generator, save_generator
from tiny_generators import CASES, is_sr, save_tiny


def inputs_for(meta: dict, module, n: int, side: tuple[int, int]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(n * 100 + side[0])
    if is_sr(meta["model"]["family"]):
        return {"lr": torch.rand(n, meta["data_shape"][0], *side, generator=gen) * 2 - 1}
    feed = {"z": torch.randn(n, module.latent_dim, generator=gen)}
    if meta["num_classes"]:
        feed["labels"] = torch.randint(0, meta["num_classes"], (n,), generator=gen)
    return feed


def run_exported(path: Path, fmt: str, feed: dict[str, torch.Tensor]) -> np.ndarray:
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(feed)
        return session.run(None, {k: v.numpy() for k, v in feed.items()})[0]
    return torch.jit.load(str(path)).eval()(*feed.values()).detach().numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family, conditional", CASES, ids=[f"{f}{'-conditional' if c else ''}" for f, c in CASES])
def test_every_family_exports_and_equals_pytorch(tmp_path, family, conditional, fmt):
    source = save_tiny(tmp_path / "gen", family, conditional)
    done = distgan.export(source, format=fmt)
    assert done.path == source / f"generator{'.onnx' if fmt == 'onnx' else '.torchscript.pt'}"
    assert done.max_abs_diff <= TOLERANCE
    print(f"{family}{' conditional' if conditional else ''} {fmt}: export's check {done.max_abs_diff:.3g}")
    g, meta = load_generator(source)
    # Batch 1 and 3 (and two image sizes, non-square, for SR), none of them the traced shape.
    worst = 0.0
    for n, side in ((1, (8, 6)), (3, (5, 9))):
        feed = inputs_for(meta, g, n, side)
        with torch.no_grad():  # images leave clamped to the range the description states
            want = g(*feed.values()).clamp(-1, 1).numpy()
        got = run_exported(done.path, fmt, feed)
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= TOLERANCE, worst
    described = json.loads(done.metadata_path.read_text())
    assert described["family"] == family and described["step"] == 3 and described["max_abs_diff"] == done.max_abs_diff
    assert described["num_classes"] == (3 if conditional else 0) and described["tolerance"] == TOLERANCE
    assert list(described["inputs"]) == list(feed)
    assert described["scale"] == (2 if is_sr(family) else None)
    assert described["inputs"][next(iter(feed))]["shape"][0] == "batch"
    if is_sr(family):
        assert described["output"]["shape"] == ["batch", 3, "2*height", "2*width"]
    else:
        assert described["z_dim"] == 8 and described["output"]["shape"] == ["batch", 1, 16, 16]


def test_images_leave_clamped_to_the_stated_range_and_points_unbounded(tmp_path):
    """A StyleGAN2's last layer is linear: the tiny one overshoots [-1, 1] by several times. Its export clamps,
    as `distgan sample` does, and says so; a 2-D point sampler's output is neither clamped nor given a range."""
    source = save_tiny(tmp_path / "sg", "stylegan2")
    g, meta = load_generator(source)
    z = {"z": torch.randn(16, g.latent_dim, generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        raw = g(*z.values())
    assert raw.abs().max() > 1.5  # the case this is about
    done = distgan.export(source, format="onnx")
    got = run_exported(done.path, "onnx", z)
    assert np.abs(got).max() <= 1.0 and np.abs(got - raw.clamp(-1, 1).numpy()).max() <= TOLERANCE
    assert json.loads(done.metadata_path.read_text())["output"]["range"] == [-1, 1]

    cfg = ModelConfig(family="mlp", latent_dim=8, g_width=8)
    torch.manual_seed(0)
    points = models.build_generator(cfg, (2,), 0).eval()
    with torch.no_grad():
        points.net[-1].bias.fill_(2.0)  # points well beyond [-1, 1], as ring8's radius-2 ring is
    save_generator(tmp_path / "ring", points, {"model": dataclasses.asdict(cfg), "data_shape": [2], "num_classes": 0})
    done = distgan.export(tmp_path / "ring", format="torchscript")
    with torch.no_grad():
        want = points(*z.values()).numpy()
    assert np.abs(want).max() > 1.5 and np.abs(run_exported(done.path, "torchscript", z) - want).max() <= TOLERANCE
    assert json.loads(done.metadata_path.read_text())["output"]["range"] is None


def test_imported_published_weights_export_with_their_padding(tmp_path):
    """Imported ESRGAN weights pad their first conv's input with a constant (a forward pre-hook): it is in
    the graph, so the ONNX file computes what ``distgan upscale`` computes."""
    source = save_tiny(tmp_path / "gen", "rrdb", first_conv_pad=-1.0)
    done = distgan.export(source, format="onnx")
    g, meta = load_generator(source)
    feed = inputs_for(meta, g, 2, (7, 5))
    with torch.no_grad():
        want = g(*feed.values()).clamp(-1, 1).numpy()  # images leave clamped
        plain = models.build_generator(ModelConfig(**meta["model"]), (3, 32, 32))
        plain.load_state_dict(g.state_dict())
        assert np.abs(plain.eval()(*feed.values()).clamp(-1, 1).numpy() - want).max() > 10 * TOLERANCE  # the pad matters
    assert np.abs(run_exported(done.path, "onnx", feed) - want).max() <= TOLERANCE


def test_the_cli_resolves_a_run_and_prints_the_difference(tmp_path, capsys):
    run = tmp_path / "run"
    save_tiny(run / "checkpoint_000003", "dcgan")  # a run that has only saved a checkpoint yet
    out = tmp_path / "deploy" / "g.pt"
    assert cli_main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and str(out) in printed
    described = json.loads(out.with_name("g.pt.json").read_text())
    assert described["source"] == str(run) and described["step"] == 3
    assert f"max abs difference {described['max_abs_diff']:.3g}" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.pt", "g.pt.json"]  # no temporary left


def test_an_onnx_export_prints_its_check_not_the_exporters_passes(tmp_path, capsys, caplog):
    # onnxscript's optimizer and onnx_ir's passes log every folded constant and merged initializer at INFO;
    # under the CLI's INFO root logger that was about 80 lines for the digits StyleGAN2.
    caplog.set_level(logging.INFO)
    save_tiny(tmp_path / "run", "stylegan2")
    assert cli_main(["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0
    chatter = [r.name for r in caplog.records if r.name.split(".")[0] in ("onnxscript", "onnx_ir", "torch")]
    assert chatter == []
    assert "max abs difference" in capsys.readouterr().out
    assert logging.getLogger("onnxscript").level == logging.NOTSET  # the levels are put back


def test_an_out_naming_a_directory_gets_the_default_file_name_in_it(tmp_path):
    source = save_tiny(tmp_path / "run", "dcgan")
    (tmp_path / "deploy").mkdir()
    assert cli_main(["export", str(source), "--format", "torchscript", "--out", str(tmp_path / "deploy")]) == 0
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["generator.torchscript.pt",
                                                                       "generator.torchscript.pt.json"]
    # A directory that does not exist yet, written as one (a trailing slash): made, and the file put in it.
    assert cli_main(["export", str(source), "--format", "torchscript", "--out", f"{tmp_path / 'new'}/"]) == 0
    assert (tmp_path / "new" / "generator.torchscript.pt").is_file()
    assert cli_main(["export", str(source), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]) == 0
    assert (tmp_path / "g.pt").is_file() and (tmp_path / "g.pt.json").is_file()


def test_a_bad_format_is_refused_naming_it(tmp_path, capsys):
    source = save_tiny(tmp_path / "gen", "mlp")
    before = sorted(p.name for p in source.iterdir())
    assert cli_main(["export", str(source), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "'tflite'" in err and "onnx, torchscript" in err
    assert sorted(p.name for p in source.iterdir()) == before
    with pytest.raises(ConfigError, match="'keras'"):
        distgan.export(source, format="keras")


def test_a_remote_source_needs_an_out_before_anything_is_read():
    with pytest.raises(ConfigError, match="--out"):
        distgan.export("s3://no-such-bucket/runs/x", format="onnx")


def test_the_help_states_the_tolerance_the_code_uses():
    export_help = build_parser()._subparsers._group_actions[0].choices["export"].format_help()
    stated = re.search(r"\(default ([0-9.e-]+)\)", " ".join(export_help.split()[-12:]))
    assert stated and float(stated.group(1)) == TOLERANCE


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_that_differs_from_its_reference_is_refused_and_leaves_no_file(tmp_path, fmt):
    """The public check with two different generators: the export of one, compared with the other."""
    first, other = (load_generator(save_tiny(tmp_path / f"g{s}", "mlp", seed=s))[0] for s in (0, 1))
    out = tmp_path / "deploy" / "g.model"
    sig = signature(first, (1, 16, 16))
    with pytest.raises(ExportCheckFailed, match="more than the tolerance 0.0001; nothing was written"):
        write_checked(sig, fmt, out, reference=signature(other, (1, 16, 16)).module)
    assert list(out.parent.iterdir()) == []
    done = write_checked(sig, fmt, out)  # the same module as its own reference passes
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.model", "g.model.json"]
    assert done.max_abs_diff <= TOLERANCE


def test_nan_or_a_wrong_shape_never_passes_the_check():
    g = torch.nn.Identity()
    x = (torch.zeros(2, 3),)
    assert max_abs_difference(g, lambda inputs: np.full((2, 3), np.nan, np.float32), x) == float("inf")
    assert max_abs_difference(g, lambda inputs: np.zeros((3, 2), np.float32), x) == float("inf")
    assert max_abs_difference(g, lambda inputs: np.full((2, 3), 5e-5, np.float32), x) == pytest.approx(5e-5)
    with pytest.raises(ExportCheckFailed, match="on inputs 2x3"):
        check_export(g, lambda inputs: np.full((2, 3), np.nan, np.float32), [x])


def test_a_generator_that_answers_differently_each_time_is_refused():
    class Noisy(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z + torch.randn_like(z)

    x = (torch.zeros(2, 3),)
    with pytest.raises(ExportCheckFailed, match="not deterministic"):
        check_export(Noisy(), lambda inputs: inputs[0].numpy(), [x])


def test_per_pixel_noise_is_exported_as_the_saved_constant(tmp_path):
    """StyleGAN2's noise (a trained, non-zero strength) is random by default: the export uses its saved
    constant noise, which the file reproduces, and says so."""
    if "stylegan2" not in models.MODELS:
        pytest.skip("no stylegan2 family in this tree")
    source = save_tiny(tmp_path / "gen", "stylegan2")
    g, meta = load_generator(source)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)
    save_generator(source, g, meta)
    done = distgan.export(source, format="torchscript")
    assert done.metadata["noise_mode"] == "const" and done.max_abs_diff <= TOLERANCE
    g, meta = load_generator(source)
    z = torch.randn(2, 8)
    with torch.no_grad():
        want = g(z, noise_mode="const").clamp(-1, 1)  # images leave clamped
        assert (g(z, noise_mode="random").clamp(-1, 1) - want).abs().max() > 10 * TOLERANCE  # the noise matters
    assert np.abs(run_exported(done.path, "torchscript", {"z": z}) - want.numpy()).max() <= TOLERANCE
