"""Fetching the Debian packages (hf_reservoir/corpus/packages.py): apt failures as clear errors, the cache."""

import os
import stat

import pytest

from hf_reservoir.corpus import packages as corpus_packages
from hf_reservoir.corpus.packages import CorpusBuildError, fetch_packages


def fake_apt(tmp_path, monkeypatch, script: str):
    """Put an `apt-get` that runs `script` first on PATH; it logs its arguments to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls.log\n{script}\n')
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "calls.log"


def test_apt_failure_gives_a_clear_error(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch, 'echo "E: Failed to fetch http://deb.debian.org/ Temporary failure" >&2; exit 100')
    monkeypatch.setattr(corpus_packages, "_apt_lists_present", lambda: True)
    with pytest.raises(CorpusBuildError) as excinfo:
        fetch_packages(str(tmp_path / "cache"))
    message = str(excinfo.value)
    assert "apt-get download" in message and "exit code 100" in message and "Failed to fetch" in message
    assert "--deb_dir" in message


def test_apt_update_without_root_gives_a_clear_error(tmp_path, monkeypatch):
    calls = fake_apt(
        tmp_path, monkeypatch, 'echo "E: Could not open lock file - open (13: Permission denied)" >&2; exit 100'
    )
    monkeypatch.setattr(corpus_packages, "_apt_lists_present", lambda: False)
    with pytest.raises(CorpusBuildError) as excinfo:
        fetch_packages(str(tmp_path / "cache"))
    assert calls.read_text().splitlines() == ["update"]
    assert "Permission denied" in str(excinfo.value) and "root" in str(excinfo.value)


def test_cached_packages_are_not_downloaded_again(tmp_path, monkeypatch):
    calls = fake_apt(tmp_path, monkeypatch, "exit 1")
    cache = tmp_path / "cache"
    cache.mkdir()
    for package in corpus_packages.PACKAGES:
        (cache / f"{package}_1.0_all.deb").write_bytes(b"")
    debs = fetch_packages(str(cache))
    assert set(debs) == set(corpus_packages.PACKAGES)
    assert not calls.exists()
