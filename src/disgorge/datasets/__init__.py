"""Dataset versions built through the consent gate."""

from .build import (
    DatasetBuild,
    DatasetDiff,
    DatasetView,
    build_dataset,
    bump,
    dataset_diff,
    dataset_view,
    derive_without,
    find_dataset,
    parse_dataset_ref,
)

__all__ = [
    "DatasetBuild",
    "DatasetDiff",
    "DatasetView",
    "build_dataset",
    "bump",
    "dataset_diff",
    "dataset_view",
    "derive_without",
    "find_dataset",
    "parse_dataset_ref",
]
