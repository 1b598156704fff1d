"""The offline feature network: trained on the real digits, cached by hash, and a feature space where FID works."""

from __future__ import annotations

import json
import time

import pytest
import torch

from distgan import load_config
from distgan.data import load_dataset
from distgan.metrics import distances, domain
from distgan.metrics.features import build_feature_net, extract_all, resolve_kind


@pytest.fixture(scope="module")
def digits():
    return load_dataset(load_config(None).data)


@pytest.fixture(scope="module")
def net(digits):
    return build_feature_net(load_config(None).eval, digits.x, digits.labels, digits.kind)


def test_the_class_network_separates_real_digits(net):
    assert net.kind == "domain" and net.classifies and net.dim == 128
    assert net.module is not None and not any(p.requires_grad for p in net.module.parameters())
    accuracy = float(net.description.split("held-out accuracy ")[1].rstrip("%")) / 100
    assert accuracy > 0.9, net.description


def test_fid_is_zero_against_itself_and_rises_with_noise(net, digits):
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(digits.x.shape, generator=gen)
    real, _ = extract_all(net, digits.x, 500, torch.device("cpu"))
    values = []
    for sigma in (0.0, 0.1, 0.2, 0.4, 0.8):
        noisy, _ = extract_all(net, (digits.x + sigma * noise).clamp(-1, 1), 500, torch.device("cpu"))
        values.append(distances.fid(real, noisy))
    assert values[0] < 1e-6
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_the_network_is_cached_by_data_hash(digits, tmp_path):
    small_x, small_y = digits.x[:400], digits.labels[:400]
    first = domain.load_or_train(small_x, small_y, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    started = time.perf_counter()
    again = domain.load_or_train(small_x, small_y, tmp_path)
    assert again.digest == first.digest and time.perf_counter() - started < 1.0
    for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    # Other data (one image changed) is another feature space, with its own cache entry.
    changed = small_x.clone()
    changed[0] = -changed[0]
    other = domain.load_or_train(changed, small_y, tmp_path)
    assert other.digest != first.digest and len(list(tmp_path.iterdir())) == 4


def test_a_tampered_cache_is_refused_by_name(digits, tmp_path):
    domain.load_or_train(digits.x[:300], digits.labels[:300], tmp_path)
    meta = next(tmp_path.glob("*.json"))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "digest": "0" * 64}))
    with pytest.raises(ValueError, match=meta.stem):
        domain.load_or_train(digits.x[:300], digits.labels[:300], tmp_path)


def test_unlabelled_images_train_a_rotation_network(digits):
    trained = domain.train_domain_net(digits.x[:600], None)
    assert trained.task == "rotation" and trained.net.head.out_features == 4
    assert trained.held_out_accuracy > 0.6  # chance is 0.25
    before = torch.get_rng_state()
    domain.train_domain_net(digits.x[:100], None)
    assert torch.equal(before, torch.get_rng_state()), "training must not move the caller's RNG"


def test_feature_kinds_follow_the_data():
    assert resolve_kind("auto", "image") == "domain" and resolve_kind("auto", "points") == "identity"
    with pytest.raises(Exception, match="eval.features=identity"):
        resolve_kind("inception", "points")
