"""Task, recipe and eval-suite configuration: pydantic models, YAML read with positions, the located-error loader."""

from urpo_kit.config.loader import folder_of, load_model, load_recipe, locate, origin_of, position_of
from urpo_kit.config.yaml_tree import Mark, PositionMap, load_yaml, load_yaml_documents

__all__ = [
    "Mark",
    "PositionMap",
    "folder_of",
    "load_model",
    "load_recipe",
    "load_yaml",
    "load_yaml_documents",
    "locate",
    "origin_of",
    "position_of",
]
