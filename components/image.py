"""The one image every component runs (override at compile time with WUKONG_IMAGE)."""

import os

IMAGE = os.environ.get("WUKONG_IMAGE", "ghcr.io/wukong-rec/wukong:0.1.0-cpu")
