"""Export a trained model as a Hub-ready folder and upload it.

The folder holds the weights (full, or seed-only reservoirs), ``config.json`` with ``auto_map``,
the two remote-code files, the tokenizer, the generated card, its ``LICENSE`` and the convergence plot.
"""

from __future__ import annotations

import os
import shutil

from .inference import check_model_dir
from .modeling_reservoir import ReservoirMarianMTModel
from .tokenization import load_tokenizer


def export_for_hub(model_dir: str, export_dir: str, reservoir_storage: str = "weights") -> list[tuple[str, int]]:
    """Write a Hub-ready copy of ``model_dir`` into ``export_dir``; return ``[(file, bytes), ...]``.

    Args:
        model_dir (`str`): a folder written by training (model, tokenizer, ``README.md`` card, plot).
        export_dir (`str`): the folder to create; it must not exist or be empty.
        reservoir_storage (`str`): ``weights`` or ``seed`` (reservoirs regenerated from their seed).
    """
    if os.path.exists(export_dir) and os.listdir(export_dir):
        raise ValueError(f"{export_dir} is not empty; give a new folder so that nothing is overwritten.")
    check_model_dir(model_dir)
    model = ReservoirMarianMTModel.from_pretrained(model_dir)
    model.save_pretrained(export_dir, reservoir_storage=reservoir_storage)
    load_tokenizer(model_dir).save_pretrained(export_dir)
    for extra in ("README.md", "LICENSE", "convergence.png"):
        source = os.path.join(model_dir, extra)
        if os.path.exists(source):
            shutil.copyfile(source, os.path.join(export_dir, extra))
    return list_files(export_dir)


def list_files(folder: str) -> list[tuple[str, int]]:
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files.append((os.path.relpath(path, folder), os.path.getsize(path)))
    return sorted(files)


def push_folder(
    folder: str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload reservoir model",
    api=None,
) -> str:
    """Create the repository (if needed), the branch ``revision`` (if given) and upload ``folder``.

    The token comes from ``token``, else ``HF_TOKEN`` or an ``hf auth login``.
    Returns the commit URL.
    """
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        folder_path=folder, repo_id=repo_id, revision=revision, commit_message=commit_message, repo_type="model"
    )
    return str(getattr(info, "commit_url", info))
