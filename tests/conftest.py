"""Shared test set-up: offline, one cache for the converted bundled model across all test files, and the
scripts/ folder importable (the benchmark and load-test tooling lives there, not in the package)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # dev tooling the tests share with the benchmark scripts
os.environ.setdefault("URPO_KIT_CACHE", str(ROOT / ".cache" / "urpo-kit"))
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "huggingface"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
