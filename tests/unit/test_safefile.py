"""The safe reader of configuration files (pipeline/safefile.py): links, FIFOs, devices,
sizes, encodings and nesting are refused with what to change, and nothing blocks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.safefile import (
    MAX_CONFIG_BYTES,
    FileRefused,
    parse_toml,
    parse_yaml,
    read_config_text,
)


def test_a_regular_file_is_read_and_a_missing_one_is_none(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("mode = \"é\"\n")
    assert read_config_text(tmp_path / "a.toml") == "mode = \"é\"\n"
    assert read_config_text(tmp_path / "missing.toml") is None


def test_links_are_refused_unless_followed(tmp_path: Path) -> None:
    (tmp_path / "real.toml").write_text("x = 1\n")
    (tmp_path / "link.toml").symlink_to("real.toml")
    (tmp_path / "dangling.toml").symlink_to("nowhere.toml")
    for name in ("link.toml", "dangling.toml"):
        with pytest.raises(FileRefused, match="is a symbolic link"):
            read_config_text(tmp_path / name)
    assert read_config_text(tmp_path / "link.toml", follow_symlinks=True) == "x = 1\n"
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    with pytest.raises(FileRefused, match="is a character device, not a regular file"):
        read_config_text(tmp_path / "zero.toml", follow_symlinks=True)


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(FileRefused, match="is a FIFO"):
        read_config_text(tmp_path / "fifo.toml", follow_symlinks=True)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(FileRefused, match="is a directory"):
        read_config_text(tmp_path / "dir.toml")


def test_size_and_encoding(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(FileRefused, match="larger than 256 KiB"):
        read_config_text(big)
    big.write_bytes(b"#" * MAX_CONFIG_BYTES)
    assert read_config_text(big) is not None
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'mode = "auto\xff"\n')
    with pytest.raises(FileRefused, match="is not UTF-8 at byte 12"):
        read_config_text(bad)


def test_deep_nesting_is_a_message_not_a_recursion_error() -> None:
    with pytest.raises(FileRefused, match="nested too deeply"):
        parse_toml("a=" + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileRefused, match="nested too deeply"):
        parse_yaml("a: " + "[" * 5_000 + "]" * 5_000)
    with pytest.raises(FileRefused, match="not valid TOML"):
        parse_toml("a = ")


def test_aliases_expanding_beyond_the_text_are_refused_wherever_yaml_is_read(
        tmp_path: Path) -> None:
    from pipeline.errors import UsageError
    from pipeline.learn.fixes import playbook_fix

    # Given a playbook whose aliases expand to 9**9 argv words in 400 bytes
    text = "w0: &w0 [" + ",".join(["x"] * 9) + "]\n"
    text += "".join(f"w{i}: &w{i} [" + ",".join([f"*w{i - 1}"] * 9) + "]\n"
                    for i in range(1, 9))
    book = tmp_path / "book.yaml"
    book.write_text(text + "steps:\n  primary:\n  - {name: go, argv: *w8}\n")
    # Then `heal learn --playbook` refuses it, naming the file and what to change, at once
    with pytest.raises(UsageError, match=r"--playbook .*book.yaml: refused: its aliases"):
        playbook_fix(str(book))
    # and a file that reuses a value through an alias (as seeds/net.yaml does) still reads
    assert parse_yaml("a: &r {x: 1}\nb: *r\nc: *r\n") == {"a": {"x": 1}, "b": {"x": 1},
                                                         "c": {"x": 1}}
