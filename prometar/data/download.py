"""`prometar data NAME --root DATA` (download + unpack) and `prometar data --check --root DATA`.

Downloads go to `<file>.part` first (resumed with an HTTP Range request when possible) and are
renamed when complete; each step is skipped when its output exists, so the command can be re-run.
On any failure (offline, dead link) it prints what to fetch by hand and where to put it, and exits
non-zero. Nothing here runs at import time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile

from tabulate import tabulate

from .check import CheckResult, check_dataset
from .sources import DRIVE_DOWNLOAD, IMAGENET_CLASSNAMES_ID, Fetch
from .specs import SPECS, layout_hint, resolve_name, resolve_root


class DownloadError(RuntimeError):
    """A download, verification or unpacking step failed (the message names the file)."""


# --------------------------------------------------------------------------------------------
# Fetching


def http_download(url: str, dest: str, timeout: float = 60.0) -> None:
    """Download `url` to `dest` via `dest.part`, resuming a partial `.part` with a Range request."""
    part = dest + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {"User-Agent": "prometar-data/0.1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            if start and getattr(resp, "status", 200) != 206:
                start = 0  # the server ignored the Range header: start over
            with open(part, "ab" if start else "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:  # 416: the .part file is already complete
            raise
    os.replace(part, dest)


def drive_download(drive_id: str, dest: str) -> None:
    """Download a public Google-Drive file with `gdown` if installed, else plain HTTP."""
    try:
        import gdown  # type: ignore
    except ImportError:
        gdown = None
    if gdown is None:
        http_download(DRIVE_DOWNLOAD.format(id=drive_id), dest)
        return
    part = dest + ".part"
    if gdown.download(id=drive_id, output=part, quiet=False) is None:
        raise DownloadError(f"gdown could not download Google-Drive id {drive_id}")
    os.replace(part, dest)


def fetch(step: Fetch, dest: str) -> None:
    """Download one `Fetch` to `dest` (tests replace this function to stay offline)."""
    if step.drive_id and not step.url:
        drive_download(step.drive_id, dest)
    else:
        http_download(step.url, dest)


# --------------------------------------------------------------------------------------------
# Verifying and unpacking


def verify(path: str, step: Fetch) -> None:
    """Size > 0, not an HTML error page, JSON parses / archive opens."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise DownloadError(f"{path} is missing or empty")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DownloadError(f"{path} is an HTML page, not {step.what} (quota, login or moved file?)")
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except ValueError as exc:
            raise DownloadError(f"{path} is not valid JSON: {exc}") from exc
        if "split_zhou_" in path and not all(k in data for k in ("train", "val", "test")):
            raise DownloadError(f'{path} lacks the "train"/"val"/"test" lists of a CoOp split file')
    if step.is_archive:
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    zf.namelist()
            else:
                with tarfile.open(path) as tf:
                    tf.next()
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"{path} does not open as an archive: {exc}") from exc


def _merge_move(src: str, dst: str) -> None:
    """Move `src` to `dst`; merge folders entry by entry; never overwrite an existing file."""
    if not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        os.replace(src, dst)
    elif os.path.isdir(src) and os.path.isdir(dst):
        for entry in os.listdir(src):
            _merge_move(os.path.join(src, entry), os.path.join(dst, entry))


def unpack(archive: str, root: str, members: tuple[tuple[str, str], ...]) -> None:
    """Extract into a temporary folder under `root`, then move each (member, destination) into place."""
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        for member, dest in members:
            src = os.path.join(tmp, member) if member else tmp
            if not os.path.exists(src):
                top = ", ".join(sorted(os.listdir(tmp))[:10])
                raise DownloadError(f"{archive} has no {member!r} inside (top-level entries: {top})")
            _merge_move(src, os.path.join(root, dest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# One dataset


def manual_step(step: Fetch, root: str) -> str:
    """Text telling the user how to do one step by hand."""
    lines = [f"  - {step.what}", f"      from: {step.link}", f"      save as: {os.path.join(root, step.save_as)}"]
    for member, dest in step.members:
        inside = f"its {member}/" if member else "its content"
        lines.append(f"      then unpack it so that {inside} ends up at {os.path.join(root, dest)}")
    return "\n".join(lines)


def run_step(step: Fetch, root: str, keep_archives: bool = False) -> None:
    """Download, verify and (for archives) unpack one step, unless its output exists."""
    done = os.path.join(root, step.creates)
    if os.path.exists(done):
        print(f"[skip] {step.what}: {done} exists")
        return
    path = os.path.join(root, step.save_as)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    local_names = os.path.join(root, "imagenet", "classnames.txt")
    if step.drive_id == IMAGENET_CLASSNAMES_ID and os.path.isfile(local_names) and path != local_names:
        shutil.copyfile(local_names, path)
        print(f"[copy] {local_names} -> {path}")
        return
    try:
        verify(path, step)  # an earlier run may have downloaded it already
    except DownloadError:
        print(f"[get ] {step.what}: {step.link} -> {path}")
        fetch(step, path)
        verify(path, step)
    if step.is_archive:
        print(f"[unpack] {path}")
        unpack(path, root, step.members)
        if not keep_archives:
            os.remove(path)


def download_dataset(name: str, root: str, keep_archives: bool = False) -> CheckResult:
    """Run every download step of the dataset's table entry, print manual instructions for what failed, then
    check the layout."""
    root = resolve_root(root)
    os.makedirs(root, exist_ok=True)
    failed = []
    spec = SPECS[name]
    for step in spec.sources:
        try:
            run_step(step, root, keep_archives)
        except (OSError, DownloadError, urllib.error.URLError, ValueError) as exc:
            print(f"[fail] {step.what}: {exc}")
            if not step.optional:
                failed.append(step)
    result = check_dataset(name, root)
    if result.status != "ok":
        print(f"\n{name} is not complete under {root}.")
        if failed:
            print("Fetch these by hand (then re-run the command; finished steps are skipped):")
            print("\n".join(manual_step(s, root) for s in failed))
        if spec.manual:
            print(spec.manual)
        print("Still missing:\n  " + "\n  ".join(result.missing))
        print(layout_hint(spec, root))
    else:
        print(f"{name} is complete under {root}")
    return result


# --------------------------------------------------------------------------------------------
# Command line


def print_check(results: list[CheckResult], root: str) -> None:
    """Table of statuses, then the missing paths of each incomplete dataset."""
    print(f"Datasets under {root}")
    rows = [[r.name, r.status, (r.missing[0] if r.missing else "; ".join(r.notes))] for r in results]
    print(tabulate(rows, headers=["dataset", "status", "details"]))
    for r in results:
        if r.status == "incomplete":
            print(f"\n{r.name}: missing\n  " + "\n  ".join(r.missing))


def print_table() -> None:
    """`prometar data --list`: the dataset table, one row per dataset."""
    rows = []
    for spec in SPECS.values():
        get = "download" if any(not f.optional for f in spec.sources) else "local"  # generated, or your images
        if spec.manual and spec.sources:
            get += " + manual"
        rows.append([spec.name, spec.config, spec.dataset_dir, spec.num_classes or "any",
                     " ".join(spec.protocols) or "-", get, spec.classnames])
    print(tabulate(rows, headers=["DATASET.NAME", "config", "folder", "classes", "protocols", "get it",
                                  "class names from"]))
    print("`prometar data NAME --root DATA` downloads a dataset (and prints any manual steps); "
          "`prometar data --check --root DATA` checks the folders.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prometar data", description="Get the CoOp benchmark datasets or check their layout.")
    p.add_argument("names", nargs="*", help="dataset names (EuroSAT or config names like eurosat); none with --check = all")
    p.add_argument("--root", help="the DATA folder (DATASET.ROOT); needed unless --list")
    p.add_argument("--list", action="store_true", help="print the dataset table (names, folders, classes, sources)")
    p.add_argument("--check", action="store_true", help="only report which datasets are complete")
    p.add_argument("--strict", action="store_true", help="with --check: exit 1 unless every checked dataset is ok")
    p.add_argument("--keep-archives", action="store_true", help="keep downloaded archives after unpacking")
    return p


def data_main(argv: list[str]) -> int:
    """Entry point of `prometar data`; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.list:
        print_table()
        return 0
    if not args.root:
        print("prometar data: --root DATA is required (the folder that holds, or will hold, the datasets)",
              file=sys.stderr)
        return 2
    try:
        names = [resolve_name(n, aliases=True) for n in args.names if n != "all"]
    except KeyError as exc:
        print(f"prometar data: {exc.args[0]}", file=sys.stderr)
        return 2
    if "all" in args.names or (args.check and not names):
        names = list(SPECS)
    root = resolve_root(args.root)
    if args.check:
        results = [check_dataset(n, root) for n in names]
        print_check(results, root)
        return 1 if args.strict and any(r.status != "ok" for r in results) else 0
    if not names:
        print("prometar data: name a dataset (or use --check); choices: " + ", ".join(SPECS), file=sys.stderr)
        return 2
    results = [download_dataset(n, root, keep_archives=args.keep_archives) for n in names]
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(data_main(sys.argv[1:]))
