"""Deploying a trained generator: ONNX and TorchScript exports checked against PyTorch (``distgan export``).

Sits above the tasks and persistence (it reads exported generators and asks their task) and below the
commands; it never imports Ray.
"""

from __future__ import annotations

from distgan.deploy.export import (TOLERANCE, ExportCheckFailed, ExportResult, check_export, export_generator,
                                   max_abs_difference, write_checked)
from distgan.deploy.formats import FORMATS
from distgan.deploy.signature import Signature, signature

__all__ = ["FORMATS", "TOLERANCE", "ExportCheckFailed", "ExportResult", "Signature", "check_export",
           "export_generator", "max_abs_difference", "signature", "write_checked"]
