"""Shared test set-up: offline, and one cache for the converted bundled model across all test files."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("URPO_KIT_CACHE", str(ROOT / ".cache" / "urpo-kit"))
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "huggingface"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
