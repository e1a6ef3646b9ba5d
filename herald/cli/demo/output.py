"""The demo's output folder: made (or refused) before anything starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from herald.cli.demo.errors import DemoError

#: What the demo writes, and all `--force` removes from a folder used before.
DEMO_FILES = ("[0-9][0-9][0-9][0-9]-*.eml", "index.html")


def previous_run(out: Path) -> list[Path]:
    """What an earlier demo left in `out` (its .eml files and index.html)."""
    return sorted({p for pattern in DEMO_FILES for p in out.glob(pattern) if p.is_file()})


def prepare_output(out: Path, *, force: bool = False) -> Path:
    """Create the output directory and prove it is writable before starting anything.

    A folder with anything in it is refused: a second run would mix its emails (and their
    Message-IDs) with the first's. `force` removes an earlier run's files (only those: any
    other file stays) and goes on.
    """
    if out.exists() and not out.is_dir():
        raise DemoError(f"output directory {out} exists and is not a directory (use --out DIR)")
    if out.is_dir():
        _clear(out, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(
            f"cannot create output directory {out}: {exc.strerror or exc} (use --out DIR)"
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".herald-probe-"):
            pass
    except OSError as exc:
        raise DemoError(
            f"output directory {out} is not writable: {exc.strerror or exc} (use --out DIR)"
        ) from None
    return out.resolve()


def _clear(out: Path, force: bool) -> None:
    """Refuse a non-empty folder; with `force`, remove an earlier run's files from it (and
    leave any other file alone). Hidden files (.DS_Store) do not count."""
    earlier = previous_run(out)
    others = [p for p in out.iterdir() if p not in earlier and not p.name.startswith(".")]
    if not force and (earlier or others):
        what = f"{len(earlier)} file(s) of an earlier run" if earlier else f"{others[0].name}"
        if earlier and others:
            what += f" and {len(others)} other file(s)"
        raise DemoError(
            f"output directory {out} is not empty ({what}): use --force to replace an "
            "earlier run's emails, or --out DIR for a new folder"
        )
    for path in earlier:
        try:
            path.unlink()
        except OSError as exc:
            raise DemoError(f"cannot remove {path}: {exc.strerror or exc}") from None
