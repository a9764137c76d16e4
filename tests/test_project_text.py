"""The project speaks for itself to outsiders: no tracked text file dates a fact by the team's working periods.

Facts are dated by their date, commit and duration; the word for a team's numbered working period means nothing to
a reader outside the team. pytest's own fixture scope (``scope="session"``) and the standard library's
``start_new_session`` are the only uses allowed.
"""

import os
import re
import subprocess

from .conftest import REPO_ROOT

TEXT = (".md", ".py", ".yaml", ".yml", ".sh", ".txt", ".toml", ".cfg", ".ini")
WORD = re.compile(r"\bsessions?\b", re.IGNORECASE)
ALLOWED = re.compile(r'scope="session"|start_new_session|per test session')


def tracked_text_files() -> list[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist): every file
        listed = [
            os.path.relpath(os.path.join(root, name), REPO_ROOT)
            for root, dirs, names in os.walk(REPO_ROOT)
            if not any(part.startswith(".") for part in os.path.relpath(root, REPO_ROOT).split(os.sep) if part != ".")
            for name in names
        ]
    return [path for path in listed if path.endswith(TEXT) and ".ci" not in path.split(os.sep)[:1]] + [
        path for path in listed if path.startswith(".ci" + os.sep)
    ]


def test_no_tracked_text_speaks_of_working_sessions():
    found = []
    for path in tracked_text_files():
        with open(os.path.join(REPO_ROOT, path), encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if WORD.search(ALLOWED.sub("", line)):
                    found.append(f"{path}:{number}: {line.strip()[:100]}")
    assert not found, "date these by their date, commit or duration instead:\n" + "\n".join(found)
