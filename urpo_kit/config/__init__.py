"""Task, recipe and eval-suite configuration: pydantic models and the located-error YAML loader."""

from urpo_kit.config.loader import (
    folder_of,
    Mark,
    PositionMap,
    load_model,
    load_recipe,
    load_yaml,
    load_yaml_documents,
    locate,
    origin_of,
    position_of,
)

__all__ = [
    "folder_of",
    "Mark",
    "PositionMap",
    "load_model",
    "load_recipe",
    "load_yaml",
    "load_yaml_documents",
    "locate",
    "origin_of",
    "position_of",
]
