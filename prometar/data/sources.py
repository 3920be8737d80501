"""How a dataset file is fetched: the `Fetch` record and its constructors. Data only, no network.

Every `Fetch` is one file: a Google-Drive id or an HTTP URL, the path (relative to ROOT) the file is
saved to, and, for archives, which archive members go where (relative to ROOT). `creates` names the
path whose existence means the step is done (resumability). Each dataset's list of fetches is part of
its entry in the dataset table (`prometar.data.specs.SPECS`, field `sources`), as CoOp's `DATASETS.md`
lists them. Some hosts of the original archives have moved since then; a dead link makes
`prometar data` print the manual steps.
"""
from __future__ import annotations

from dataclasses import dataclass

DRIVE_VIEW = "https://drive.google.com/file/d/{id}/view"
DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
DOWNLOADS = "_downloads"  # archives are saved under ROOT/_downloads/ and removed after unpacking


@dataclass(frozen=True)
class Fetch:
    """One downloadable file (set exactly one of `url` / `drive_id`)."""

    what: str
    save_as: str
    creates: str
    url: str | None = None
    drive_id: str | None = None
    members: tuple[tuple[str, str], ...] = ()  # archive: (member path, destination); "" = all
    optional: bool = False  # only needed by the fallback splitters

    @property
    def is_archive(self) -> bool:
        return bool(self.members)

    @property
    def link(self) -> str:
        return self.url if self.url else DRIVE_VIEW.format(id=self.drive_id)


def coop_split(dataset_dir: str, name: str, drive_id: str) -> Fetch:
    """CoOp's `split_zhou_<name>.json`, saved in the dataset folder."""
    path = f"{dataset_dir}/split_zhou_{name}.json"
    return Fetch(f"CoOp split file split_zhou_{name}.json", path, path, drive_id=drive_id)


def imagenet_classnames(dataset_dir: str) -> Fetch:
    """CoOp's ImageNet `classnames.txt` (`<wnid> <class name>` lines), saved in the dataset folder."""
    path = f"{dataset_dir}/classnames.txt"
    return Fetch("ImageNet class names (CoOp classnames.txt)", path, path, drive_id=IMAGENET_CLASSNAMES_ID)


def archive(what: str, url: str | None, filename: str, creates: str, *members: tuple[str, str],
            drive_id: str | None = None, optional: bool = False) -> Fetch:
    """An archive saved as `ROOT/_downloads/<filename>`, unpacked member by member (`(member,
    destination)`, relative to ROOT) and then removed."""
    return Fetch(what, f"{DOWNLOADS}/{filename}", creates, url=url, drive_id=drive_id, members=members,
                 optional=optional)
