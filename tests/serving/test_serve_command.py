"""``distgan serve`` refuses what it cannot serve safely before Ray starts: beyond loopback without a token, a
missing token file, limits that contradict each other, a generator that is not there."""

from __future__ import annotations

import pytest

from distgan.cli import main as cli_main
from distgan.launch.serve import is_loopback, resolve_token
from distgan.config import ConfigError
from tiny_generators import save_tiny


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("g"), "dcgan")


@pytest.mark.parametrize("flags, needle", [
    (["--host", "0.0.0.0"], "binding beyond loopback needs a bearer token; give --token-file FILE or set "
                            "$DISTGAN_SERVE_TOKEN"),
    (["--host", "serving.example.com"], "binding beyond loopback needs a bearer token"),
    (["--token-file", "/nonexistent/token"], "--token-file /nonexistent/token: no such file"),
    (["--max-n", "100", "--max-batch", "64"], "--max-n 100 exceeds --max-batch 64"),
    (["--replicas", "two"], "--replicas 'two': expected a whole number or auto"),
    (["--route", "digits"], "--route 'digits': must start with /"),
    (["--port", "70000"], "--port 70000: expected 1-65535"),
    (["--timeout", "0"], "timeout_s: must be a number of seconds > 0"),
])
def test_refusals_name_the_flag_and_start_nothing(generator, capsys, monkeypatch, flags, needle):
    import ray
    from ray import serve

    started = []
    # The suite's shared Ray may be up already: what must not happen is a start or a deployment.
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append("ray.init"))
    monkeypatch.setattr(serve, "start", lambda *a, **k: started.append("serve.start"))
    monkeypatch.setattr(serve, "run", lambda *a, **k: started.append("serve.run"))
    monkeypatch.delenv("DISTGAN_SERVE_TOKEN", raising=False)
    assert cli_main(["serve", str(generator), *flags]) == 2
    assert needle in capsys.readouterr().err
    assert started == []


def test_a_missing_generator_is_named(tmp_path, capsys):
    assert cli_main(["serve", str(tmp_path / "nothing")]) == 2
    assert "nothing does not exist" in capsys.readouterr().err


def test_an_empty_token_file_is_refused(generator, tmp_path, capsys):
    (tmp_path / "token").write_text("\n")
    assert cli_main(["serve", str(generator), "--host", "0.0.0.0", "--token-file", str(tmp_path / "token")]) == 2
    assert "the serving token is empty" in capsys.readouterr().err


def test_loopback_needs_no_token_and_any_other_address_does():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.com"))
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("0.0.0.0", "  tok \n") == "tok"
    with pytest.raises(ConfigError, match="needs a bearer token"):
        resolve_token("::", None)
