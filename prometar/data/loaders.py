"""Data loaders like Dassl's `DataManager`: dataset -> transforms -> loaders -> summary."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from PIL import Image
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from .datasets import DatasetBase, build_dataset
from .records import Datum
from .transforms import build_transform, interpolation_mode


def read_image(path: str) -> Image.Image:
    """Open an image with PIL and convert it to RGB; the error names the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f'No file found at "{path}"') from exc
    except (OSError, ValueError) as exc:
        raise OSError(f'Cannot read image "{path}": {exc}. Replace or re-download this file (or remove it from '
                      f"the split file and delete the few-shot caches)") from exc


class DatasetWrapper(Dataset):
    """Torch dataset over a list of `Datum`; items are dicts img, label, domain, impath, index."""

    def __init__(self, cfg: Any, data_source: Sequence[Datum], transform: Any = None, is_train: bool = False) -> None:
        self.data_source = data_source
        self.transform = transform
        loader_cfg = cfg.DATALOADER
        self.k_tfm = loader_cfg.get("K_TRANSFORMS", 1) if is_train else 1
        self.return_img0 = loader_cfg.get("RETURN_IMG0", False)
        if self.k_tfm > 1 and transform is None:
            raise ValueError("DATALOADER.K_TRANSFORMS > 1 needs a transform (INPUT.NO_TRANSFORM is set)")
        plain = [Resize(cfg.INPUT.SIZE, interpolation=interpolation_mode(cfg.INPUT.INTERPOLATION)), ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            plain.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = Compose(plain)

    def __len__(self) -> int:
        return len(self.data_source)

    def _apply(self, tfm: Callable, img0: Image.Image) -> Any:
        imgs = [tfm(img0) for _ in range(self.k_tfm)]
        return imgs[0] if len(imgs) == 1 else imgs

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        out = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            out["img"] = self.to_tensor(img0)
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                out["img" if i == 0 else f"img{i + 1}"] = self._apply(tfm, img0)
        else:
            out["img"] = self._apply(self.transform, img0)
        if self.return_img0:
            out["img0"] = self.to_tensor(img0)
        return out


def build_data_loader(
    cfg: Any,
    data_source: Sequence[Datum],
    batch_size: int,
    transform: Any,
    is_train: bool,
    sampler_type: str = "SequentialSampler",
    dataset_wrapper: type | None = None,
) -> DataLoader:
    """One loader: RandomSampler (torch global RNG) or SequentialSampler; drop_last only for training
    lists with at least one full batch; NUM_WORKERS workers; pin_memory when CUDA is used."""
    samplers = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}
    if sampler_type not in samplers:
        raise ValueError(f"sampler {sampler_type!r} is not supported; choose one of {', '.join(samplers)}")
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=transform, is_train=is_train)
    loader = DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=samplers[sampler_type](data_source),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.get("USE_CUDA", True),
    )
    if len(loader) == 0:
        raise ValueError(f"data loader over {len(data_source)} samples with batch size {batch_size} has no batch")
    return loader


class DataManager:
    """Dataset, transforms and loaders of a run (Dassl's `DataManager` without Dassl).

    Attributes: dataset, train_loader_x, train_loader_u (None), val_loader (None without val),
    test_loader, num_classes, num_source_domains, lab2cname, classnames, tfm_train, tfm_test.
    """

    def __init__(
        self,
        cfg: Any,
        custom_tfm_train: Any = None,
        custom_tfm_test: Any = None,
        dataset_wrapper: type | None = None,
    ) -> None:
        dataset = build_dataset(cfg)
        tfm_train = _transform_or_custom(cfg, custom_tfm_train, is_train=True)
        tfm_test = _transform_or_custom(cfg, custom_tfm_test, is_train=False)
        loader = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, dataset.train_x, loader.TRAIN_X.BATCH_SIZE, tfm_train, True,
            sampler_type=loader.TRAIN_X.get("SAMPLER", "RandomSampler"), dataset_wrapper=dataset_wrapper,
        )
        self.train_loader_u = None
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, dataset.val, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False,
                sampler_type=loader.TEST.get("SAMPLER", "SequentialSampler"), dataset_wrapper=dataset_wrapper,
            )
        self.test_loader = build_data_loader(
            cfg, dataset.test, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False,
            sampler_type=loader.TEST.get("SAMPLER", "SequentialSampler"), dataset_wrapper=dataset_wrapper,
        )
        self.dataset: DatasetBase = dataset
        self.tfm_train, self.tfm_test = tfm_train, tfm_test
        self.num_classes = dataset.num_classes
        self.num_source_domains = len(cfg.DATASET.get("SOURCE_DOMAINS", ()) or ())
        self.lab2cname = dataset.lab2cname
        self.classnames = dataset.classnames
        if cfg.get("VERBOSE", True):
            self.show_dataset_summary(cfg)

    def show_dataset_summary(self, cfg: Any) -> None:
        """Print Dassl's two-column table (tabulate 'simple', thousands separators)."""
        ds = self.dataset
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.get("SOURCE_DOMAINS"):
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.get("TARGET_DOMAINS"):
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(ds.train_x):,}"])
        if ds.train_u:
            table.append(["# train_u", f"{len(ds.train_u):,}"])
        if ds.val:
            table.append(["# val", f"{len(ds.val):,}"])
        table.append(["# test", f"{len(ds.test):,}"])
        print(tabulate(table))


def build_data(cfg: Any, **kwargs: Any) -> DataManager:
    """`DataManager(cfg, **kwargs)`: dataset, transforms, loaders and the printed summary."""
    return DataManager(cfg, **kwargs)


def _transform_or_custom(cfg: Any, custom: Any, is_train: bool) -> Any:
    """The caller's transform when given (announced as Dassl does), else the config's."""
    if custom is None:
        return build_transform(cfg, is_train=is_train)
    print(f"* Using custom transform for {'training' if is_train else 'testing'}")
    return custom
