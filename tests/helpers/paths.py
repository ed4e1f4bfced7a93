"""Where the repository and the data beside it live."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GOEMOTIONS_DIR = REPO_ROOT.parent / "shared" / "datasets" / "goemotions"
