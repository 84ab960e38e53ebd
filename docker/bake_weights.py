"""Download the hub models a models file names into a folder and write a models file that
points at them (for a worker image: weights baked in, no hub access at run time).

    python docker/bake_weights.py models.yaml /opt/models

The hub token, when a model needs one, is read from the file named by ``HF_TOKEN_FILE`` (a
BuildKit secret) or the ``HF_TOKEN`` variable; it is never printed or written.
"""

from __future__ import annotations

import os
import re
import sys

import yaml

#: keys holding a model name, per stage
MODEL_KEYS = {
    "planner": ("model",),
    "grounder": ("detector", "sam"),
    "editor": ("model",),
    "judge": ("model",),
}
#: files a from_pretrained load needs (no .bin pickles, no other frameworks' weights)
PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.jinja",
    "*.py",
    "**/*.json",
    "**/*.safetensors",
    "**/*.txt",
]


def local_name(repo_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", repo_id)


def bake(src: str, dest: str, download=None) -> dict:
    """Rewrite the models file ``src`` into ``dest/models.yaml``, downloading hub names with
    ``download(repo_id, local_dir)`` (default: huggingface_hub.snapshot_download)."""
    with open(src) as fh:
        cfg = yaml.safe_load(fh)
    if download is None:
        from huggingface_hub import snapshot_download

        token = os.environ.get("HF_TOKEN")
        if os.environ.get("HF_TOKEN_FILE") and os.path.exists(os.environ["HF_TOKEN_FILE"]):
            with open(os.environ["HF_TOKEN_FILE"]) as fh:
                token = fh.read().strip() or token

        def download(repo_id: str, local_dir: str) -> None:
            snapshot_download(repo_id, local_dir=local_dir, allow_patterns=PATTERNS, token=token)

    done: dict[str, str] = {}
    for stage, keys in MODEL_KEYS.items():
        for key in keys:
            name = (cfg.get(stage) or {}).get(key)
            if not name or os.path.isdir(name):
                continue
            if name not in done:
                done[name] = os.path.join(dest, local_name(name))
                download(name, done[name])
            cfg[stage][key] = done[name]
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "models.yaml"), "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return cfg


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bake_weights.py MODELS_YAML DEST_DIR")
    bake(sys.argv[1], sys.argv[2])
    print(f"wrote {os.path.join(sys.argv[2], 'models.yaml')}")
