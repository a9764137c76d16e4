"""Export a trained model as a Hub-ready folder and upload it: the one push path.

The folder holds the weights (full, or seed-only reservoirs), ``config.json`` with ``auto_map``,
the two remote-code files, the tokenizer, the generated card, its ``LICENSE`` and the convergence plot.
``hf-reservoir push`` and training's ``--push_to_hub`` both upload through [`push_model`].
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

from ..corpus.tokenization import load_tokenizer
from ..evaluation.inference import check_model_dir
from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel
from ..utils.run_folder import CONVERGENCE_PLOT


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
    for extra in ("README.md", "LICENSE", CONVERGENCE_PLOT):
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


class HubUploadError(RuntimeError):
    """The Hub refused the upload or could not be reached (the export itself succeeded)."""


def check_hub_token(token: str | None, flag: str = "--token") -> None:
    """Refuse an upload without a Hub token (``token``, else ``HF_TOKEN`` or a login), before any work."""
    from huggingface_hub import get_token

    if not (token or get_token()):
        raise ValueError(
            f"no Hub token for the upload: pass {flag}, set HF_TOKEN, or log in once with `hf auth login`."
        )


def push_model(
    model_dir: str,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    reservoir_storage: str = "weights",
    export_dir: str | None = None,
    dry_run: bool = False,
    report: Callable[[str], None] = print,
) -> str | None:
    """Export ``model_dir`` for the Hub, list its files through ``report``, and upload it unless ``dry_run``.

    Args:
        model_dir (`str`): a model folder written by training (``OUTPUT_DIR/model``).
        repo_id (`str`): the Hub repository, e.g. ``your-name/reservoir-de-en`` (created if missing).
        private, revision, token: as [`push_folder`].
        reservoir_storage (`str`): ``weights`` or ``seed`` (see [`export_for_hub`]).
        export_dir (`str`, *optional*): keep the Hub-ready folder here (default: a temporary folder).
        dry_run (`bool`): list what would be uploaded and stop.

    Returns:
        `str | None`: the commit URL, or None for a dry run.
    """
    check_model_dir(model_dir)  # first: a wrong folder is named before the token or the network
    if not dry_run:
        check_hub_token(token)
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = export_dir or os.path.join(scratch, "export")
        files = export_for_hub(model_dir, export_dir, reservoir_storage)
        total = sum(size for _, size in files)
        where = f"{repo_id}{'@' + revision if revision else ''}"
        report(f"{'Would upload' if dry_run else 'Uploading'} {len(files)} files ({total:,} bytes) to {where}:")
        for name, size in files:
            report(f"  {size:>12,}  {name}")
        if dry_run:
            return None
        try:
            return push_folder(export_dir, repo_id, private=private, revision=revision, token=token)
        except Exception as error:  # noqa: BLE001 - network and Hub errors: one sentence, the model folder is intact
            raise HubUploadError(
                f"the upload to {repo_id} failed: {type(error).__name__}: {error}. The model folder {model_dir} is "
                f"unchanged; retry with `hf-reservoir push {model_dir} {repo_id}`."
            ) from error
