"""The command line of the commands that use or make a generator: ``distgan sample | evaluate | import-weights |
upscale | export | serve``. ``distgan.cli`` adds these parsers to its own; each command runs in
``distgan.generator_commands``, imported only when one of them runs (it brings torch), so ``--help`` stays
as quick as the rest of the CLI's.
"""

from __future__ import annotations

import argparse

SOURCE_HELP = "a run directory, checkpoint or generator.safetensors, or its URI (s3://bucket/runs/NAME)"


def generator_command(name: str):
    """A command of ``distgan.generator_commands``, imported when it runs: it brings torch with it."""

    def run(args: argparse.Namespace) -> int:
        from distgan import generator_commands  # torch and the layers below: only when the command runs

        return getattr(generator_commands, name)(args)

    return run


def add_commands(sub) -> None:
    """Add the six commands' parsers to ``sub``, the CLI's sub-command parsers."""
    p = sub.add_parser("sample", help="generate samples from a run or an exported generator")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--out", required=True, help="FILE.png for a grid, FILE.npz for an array 'images', FILE.gif for "
                                                "--interpolate's animation")
    p.add_argument("--seed", type=int, default=0, help="latent seed")
    p.add_argument("--zoom", type=int, default=1, help="enlarge a .png grid this many times (nearest pixel)")
    p.add_argument("--labels", help="conditional generators: 'all' (default, equal shares) or classes, "
                                    "e.g. 0,1,2 or class names; .npz output then holds 'labels'")
    p.add_argument("--truncation", type=float, metavar="PSI",
                   help="style-based generators: pull w toward its tracked mean, w_avg + PSI (w - w_avg); "
                        "1 leaves it, 0 gives the average image, 0.5-0.7 trades variety for quality")
    p.add_argument("--mix", nargs="?", const="4x4", metavar="ROWSxCOLS",
                   help="style-based generators: a style-mixing grid (default 4x4, .png): each cell takes the "
                        "coarse styles of its row's latent and the rest of its column's; --n is not used")
    p.add_argument("--crossover", type=int, metavar="K",
                   help="--mix: the first style taken from the columns (default: 4, the 4x4 and 8x8 styles, "
                        "at most half the styles)")
    p.add_argument("--interpolate", nargs="?", const="4x8", metavar="KxSTEPS",
                   help="a walk through K latents (default 4x8), STEPS images from each to the next: strips "
                        "(.png), a looping animation (.gif) or an array (.npz); in W for style-based "
                        "generators, along the sphere in z for others; --n is not used")
    p.add_argument("--fps", type=float, default=12.0, help="--interpolate's .gif: frames a second")
    p.add_argument("--noise-mode", choices=["const", "random", "none"],
                   help="style-based generators' per-pixel noise (default const: the same seed, the same images)")
    p.set_defaults(func=generator_command("sample"))

    p = sub.add_parser("evaluate", help="score a generator: FID, KID, precision/recall (and class accuracy); for "
                                        "super-resolution PSNR/SSIM, on its validation images or --hr-folder")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="eval.* or data.* overrides")
    p.add_argument("--metrics", help="comma-separated: fid, kid, pr, class_acc (default: the run's eval.metrics)")
    p.add_argument("--n", type=int, help="generated samples (default: the run's eval.n)")
    p.add_argument("--features", choices=["auto", "domain", "inception", "identity"], help="feature space")
    p.add_argument("--inception-weights", help="FID Inception-v3 weights file (for --features inception)")
    p.add_argument("--seed", type=int, help="latent seed")
    p.add_argument("--batch-size", type=int, help="samples per forward pass")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="alone: print one JSON object instead of the table; --json FILE: write it to FILE "
                        "and print the table")
    q = p.add_argument_group("super-resolution benchmarks (Set5, Set14, DIV2K-val, ...)")
    q.add_argument("--hr-folder", metavar="DIR", help="score PSNR/SSIM (Y, border = scale) per image and on "
                                                      "average, bicubic beside, on these high-resolution images")
    q.add_argument("--lr-folder", metavar="DIR", help="their low-resolution inputs, paired by name (default: "
                                                      "MATLAB bicubic downsampling of the HR)")
    q.add_argument("--out", metavar="DIR", help="also write the upscaled images there as PNGs")
    q.add_argument("--tile", type=int, default=0, help="tile side in LR pixels for big images (0: whole)")
    q.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where G runs")
    p.set_defaults(func=generator_command("evaluate"))

    p = sub.add_parser("import-weights", help="a released ESRGAN/Real-ESRGAN/BasicSR generator (.pth or "
                                              ".safetensors) as a distgan generator directory")
    p.add_argument("file", metavar="FILE", help="the weights: read as tensors only (never unpickling objects), "
                                                "bare or BasicSR's params_ema/params")
    p.add_argument("--family", required=True, choices=["rrdb", "srresnet"], help="the model family it is")
    p.add_argument("--scale", type=int, help="expected upscaling factor; an error if the file's differs")
    p.add_argument("--out", required=True, metavar="DIR", help="new directory for generator.safetensors + "
                                                               "generator.json (for upscale, evaluate, "
                                                               "train.init_from)")
    p.set_defaults(func=generator_command("import_published"))

    p = sub.add_parser("upscale", help="super-resolve an image, or a folder of them, with an SR generator")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help="a run, checkpoint or generator.safetensors "
                                                                 "of model.family srresnet or rrdb, or its URI")
    p.add_argument("input", metavar="INPUT", help="a PNG/JPEG file, or a folder of them (searched recursively)")
    p.add_argument("--out", help="output PNG for a file (default INPUT_x{scale}.png beside it) or output folder "
                                 "for a folder (default FOLDER_x{scale}/ beside it, tree mirrored)")
    p.add_argument("--tile", type=int, default=0, help="tile side in input pixels, bounding memory on big images "
                                                       "(e.g. 256); 0 runs the whole image at once")
    p.add_argument("--tile-overlap", type=int, default=16,
                   help="context in input pixels around each tile; exact when >= G's receptive-field radius, "
                        "otherwise the seams differ slightly (default 16)")
    p.add_argument("--scale", type=int, help="expected upscaling factor; an error if the generator's differs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where G runs (auto: the GPU when there is one)")
    p.set_defaults(func=generator_command("upscale"))

    p = sub.add_parser("export", help="a generator as an ONNX or TorchScript file (dynamic batch, and image size "
                                      "for super-resolution), checked against PyTorch before it is written")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    # No argparse choices: the formats' registry (distgan.deploy.formats) names them, and torch loads late.
    p.add_argument("--format", required=True, metavar="onnx|torchscript",
                   help="onnx (ONNX Runtime and most deploy targets; needs the export extra) or torchscript "
                        "(torch.jit.load, LibTorch)")
    p.add_argument("--out", metavar="F", help="the file to write (default: beside the weights, generator.onnx or "
                                              "generator.torchscript.pt); its description goes to F.json")
    p.add_argument("--tolerance", type=float, help="largest max abs difference from PyTorch accepted "
                                                   "(default 1e-4)")
    p.set_defaults(func=generator_command("export"))

    p = sub.add_parser("serve", help="a generator behind HTTP on Ray Serve (samples, or upscaling), batched and "
                                     "replicated; loopback only unless given a host and a token")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("--address", help="a Ray cluster (HOST:6379, ray://HEAD:10001 or auto); default: an embedded Ray")
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP proxy binds (default 127.0.0.1); any "
                                                       "other needs a token")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--route", default="/", help="path the app answers under, e.g. /digits (default /)")
    p.add_argument("--replicas", default="1", help="replicas, or auto: 1 to --max-replicas by queue length")
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=64, help="samples or images per batch (default 64)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="longest wait for a batch to fill (10)")
    p.add_argument("--tile", type=int, default=128, help="upscaling tile side in input pixels (0: whole images)")
    p.add_argument("--max-n", type=int, default=64, help="samples per request (default 64)")
    p.add_argument("--max-pixels", type=int, default=4_000_000, help="input pixels per image to upscale")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="request body size (default 20 MiB)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request, end to end (default 60)")
    p.add_argument("--token-file", metavar="FILE", help="the bearer token clients must send (else $DISTGAN_SERVE_"
                                                        "TOKEN); required beyond loopback, never printed")
    p.add_argument("--detach", action="store_true", help="return once deployed and leave it running on the cluster")
    p.set_defaults(func=generator_command("serve"))
