"""Datasets: Pascal VOC, mask folders, class-index folders, CamVid and the synthetic world.

`open_dataset("camvid:data/camvid", "train")` turns a `--data` string into a dataset;
`validate_dataset` checks it before training. The TensorFlow input pipeline lives in
`edgeseg.data.pipeline` and is imported only by training and evaluation code, so importing this
package never loads TensorFlow.
"""

from edgeseg.data.base import ClassInfo, FileDataset, SegDataset
from edgeseg.data.sources import DatasetReport, open_dataset, parse_size, parse_split, validate_dataset

__all__ = [
    "ClassInfo",
    "DatasetReport",
    "FileDataset",
    "SegDataset",
    "open_dataset",
    "parse_size",
    "parse_split",
    "validate_dataset",
]
