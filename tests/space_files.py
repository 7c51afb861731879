"""What a Hugging Face Space deploy would send, and whether the Hub would take it (docs/deploy.md).

    .venv/bin/python tests/space_files.py         # lists the files; exit 1 with one line per problem

The deploy sends a snapshot of the repository's files without their history (`git archive`, then
`hf upload`). The Hub refuses binary files that are not stored with LFS/Xet, so every binary file
must match an LFS pattern of `.gitattributes`; those files must still be real content in git, not
LFS pointers, because CI and `pip install` read them from a plain clone; and the README's front
matter is the Space's configuration, so it must be valid YAML with the keys the Space needs.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIG = 1_000_000  # bytes: the size over which the Hub's rule matters most (named in the report)
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def git(*args: str, cwd: Path = REPO, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          check=True).stdout


def files(repo: Path = REPO) -> list[str]:
    """The files a snapshot of this working tree would hold once committed: tracked and new ones,
    not those .gitignore leaves out, not those deleted."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=repo).split("\0")
    return sorted({p for p in listed if p and (repo / p).is_file()})


def lfs_tracked(paths: list[str], repo: Path = REPO) -> set[str]:
    """The paths whose `filter` attribute is `lfs` under the repository's .gitattributes."""
    out = git("check-attr", "-z", "--stdin", "filter", cwd=repo, stdin="\0".join(paths)).split("\0")
    return {path for path, _, value in zip(out[0::3], out[1::3], out[2::3]) if value == "lfs"}


def is_binary(path: Path) -> bool:
    """git's own test: a NUL byte in the first 8,000 bytes."""
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def front_matter(readme: Path) -> dict:
    """The YAML between the README's first two `---` lines; ValueError if there is none."""
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError("README.md does not start with a --- front matter block")
    meta = yaml.safe_load(text[4:text.index("\n---\n", 4)])
    if not isinstance(meta, dict):
        raise ValueError("README.md's front matter is not a YAML mapping")
    return meta


def card_problems(meta: dict, repo: Path = REPO) -> list[str]:
    problems = [f"front matter: {key} missing or not a string" for key in
                ("title", "sdk", "sdk_version", "python_version", "app_file", "license", "emoji", "short_description")
                if not isinstance(meta.get(key), str)]
    if meta.get("sdk") != "gradio":
        problems.append("front matter: sdk is not gradio")
    if isinstance(meta.get("app_file"), str) and not (repo / meta["app_file"]).is_file():
        problems.append(f"front matter: app_file {meta['app_file']} is not in the repository")
    problems += [f"front matter: {key} is not one of {', '.join(sorted(COLOURS))}"
                 for key in ("colorFrom", "colorTo") if meta.get(key) not in COLOURS]
    return problems


def problems(repo: Path = REPO) -> list[str]:
    """One line per reason the Hub would refuse the snapshot, or a plain clone would break."""
    paths = files(repo)
    lfs = lfs_tracked(paths, repo)
    out = []
    for path in paths:
        full = repo / path
        if is_binary(full) and path not in lfs:
            size = full.stat().st_size
            out.append(f"{path}: a binary file ({size:,} bytes{', over 1 MB' if size > BIG else ''}) "
                       "outside the LFS patterns of .gitattributes")
        if path in lfs and full.read_bytes()[:len(LFS_POINTER)] == LFS_POINTER:
            out.append(f"{path}: an LFS pointer, not the file: a plain clone (CI, pip) would not have it")
    try:
        out += card_problems(front_matter(repo / "README.md"), repo)
    except (ValueError, yaml.YAMLError) as e:
        out.append(str(e).splitlines()[0])
    return out


def main() -> int:
    paths = files()
    lfs = lfs_tracked(paths)
    for path in paths:
        print(f"{'lfs ' if path in lfs else '    '}{(REPO / path).stat().st_size:>10,}  {path}")
    total = sum((REPO / p).stat().st_size for p in paths)
    print(f"{len(paths)} files, {total / 1e6:.1f} MB, {len(lfs)} of them stored with LFS/Xet")
    found = problems()
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
