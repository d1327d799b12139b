"""What the CLI prints when its reader goes away: ``artifactfs ls ... | head -2`` stops
quietly, where it said ``error: [Errno 32] Broken pipe``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import ARTIFACTFS, make_tree
from test_cli import embedded_only


@embedded_only
def test_a_closed_pipe_stops_ls_without_a_word(run_cli, env: dict[str, str],
                                               tmp_path: Path) -> None:
    # more than a pipe's 64 KiB of listing, so the writer meets the closed end
    files = {f"f{i:05d}.txt": b"x" for i in range(2500)}
    run_cli("push", str(make_tree(tmp_path / "src", files)), "p/many", "--type", "dataset",
            check=True)
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {ARTIFACTFS} ls p/many:v0 | head -2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[0].split() == ["PATH", "SIZE", "DIGEST"]
    assert len(proc.stdout.splitlines()) == 2
    assert proc.stderr == ""  # no "error: [Errno 32] Broken pipe", no traceback
    assert proc.returncode == 1  # as click ends any command whose output pipe closed


def test_shell_completion_works_as_the_readme_says(tmp_path: Path) -> None:
    """The README's bash line, then a completion of ``artifactfs mo`` through it."""
    script = (f'eval "$(_ARTIFACTFS_COMPLETE=bash_source {ARTIFACTFS})"; '
              f'COMP_WORDS=(artifactfs mo); COMP_CWORD=1; _artifactfs_completion {ARTIFACTFS}; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["mount"]
    for shell in ("zsh", "fish"):
        proc = subprocess.run([ARTIFACTFS], env={"_ARTIFACTFS_COMPLETE": f"{shell}_source",
                                                 "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "artifactfs" in proc.stdout, shell


def test_a_misspelled_name_suggests_the_close_one(run_cli, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    run_cli("push", str(src), "vision/mnist", "--type", "dataset", "--alias", "best",
            check=True)
    for typed, meant in [("vison/mnist", "vision/mnist:latest"),
                         ("vision/mnsit", "vision/mnist:latest"),
                         ("vision/mnist:bets", "vision/mnist:best"),
                         ("vision/mnist:lates", "vision/mnist:latest")]:
        proc = run_cli("download", typed, "--root", str(tmp_path / "out"))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().endswith(f"not found; did you mean {meant}?"), proc.stderr
    far = run_cli("download", "vision/zzzzzz")
    assert far.stderr.strip() == "error: artifact local/vision/zzzzzz:latest not found"


def test_versions_are_printed_as_they_are_typed_back(run_cli, tmp_path: Path) -> None:
    """push, verify and delete print one form: PROJECT/NAME:vN in the entity the command
    works in, ENTITY/PROJECT/NAME:vN in another (push printed the first and verify the
    second)."""
    src = make_tree(tmp_path / "src", {"a.txt": b"a"})
    assert run_cli("push", str(src), "vision/mnist", "--type", "dataset",
                   check=True).stdout.strip() == "vision/mnist:v0"
    run_cli("download", "vision/mnist", "--root", str(tmp_path / "out"), check=True)
    verified = run_cli("verify", "vision/mnist", "--root", str(tmp_path / "out"), check=True)
    assert verified.stdout.strip().endswith("matches vision/mnist:v0")
    assert run_cli("push", str(src), "vision/mnist", "--type", "dataset",
                   check=True).stdout.strip() == "unchanged: vision/mnist:v0"


def test_download_gives_files_the_mode_the_umask_says(run_cli, tmp_path: Path,
                                                     env: dict[str, str]) -> None:
    """As cp, git or tar would: 0666 less the umask (0600 whatever the umask before)."""
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    run_cli("push", str(src), "vision/m", "--type", "dataset", check=True)
    for umask, mode in ((0o002, 0o664), (0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / f"out-{umask:o}"
        subprocess.run([ARTIFACTFS, "download", "vision/m", "--root", str(out)], env=env,
                       check=True, capture_output=True, timeout=60,
                       preexec_fn=lambda u=umask: os.umask(u))
        assert {p: (out / p).stat().st_mode & 0o777 for p in ("a.txt", "sub/b.txt")} == {
            "a.txt": mode, "sub/b.txt": mode}, f"umask {umask:o}"


@embedded_only
def test_download_on_a_terminal_shows_bytes_and_files(run_cli, tmp_path: Path,
                                                     env: dict[str, str]) -> None:
    """On a terminal (script(1) gives the command one) a download's bar counts bytes and
    files; in a pipe it prints nothing but the folder."""
    files = {f"f{i}.bin": os.urandom(300_000) for i in range(6)}
    run_cli("push", str(make_tree(tmp_path / "src", files)), "vision/m", "--type", "dataset",
            check=True)
    out = tmp_path / "out"
    # a terminal of 120 columns: script(1)'s own has none, and a bar of 0 columns is empty
    command = f"stty cols 120 rows 40; {ARTIFACTFS} download vision/m --root {out}"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "download m" in proc.stdout and "6/6 files" in proc.stdout, proc.stdout
    assert "MB" in proc.stdout or "M/" in proc.stdout or "MiB" in proc.stdout, proc.stdout
    assert {p: (out / p).read_bytes() for p in files} == files
    piped = run_cli("download", "vision/m", "--root", str(tmp_path / "out2"), check=True)
    assert piped.stdout.strip() == str(tmp_path / "out2") and piped.stderr == ""
