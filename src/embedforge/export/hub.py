"""Optional upload of an exported folder to the Hugging Face hub (huggingface_hub)."""

from __future__ import annotations

import os
from pathlib import Path

from embedforge.errors import ServiceError


class HubUploadError(ServiceError):
    """The upload failed; the message names the repo id and says that the local export is complete."""


def upload_folder(folder: Path, repo_id: str, *, private: bool = True, token_env: str = "HF_TOKEN",
                  commit_message: str = "Upload embedforge export") -> str:
    """Create (or reuse) the model repo and upload the folder; return the repo URL.

    The token is read from the environment variable `token_env` (or huggingface_hub's own login) and is
    never logged or written anywhere.
    """
    from huggingface_hub import HfApi, constants

    where = f"the export is complete at {folder}; upload it later with `hf upload {repo_id} {folder}`"
    offline_env = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    if offline_env or constants.is_offline_mode():
        raise HubUploadError(f"upload.repo_id={repo_id}: cannot upload, HF_HUB_OFFLINE=1 is set ({where})")
    if "/" not in repo_id:
        raise HubUploadError(f"upload.repo_id={repo_id!r}: expected 'owner/name'")
    api = HfApi(token=os.environ.get(token_env) or None)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    except Exception as exc:  # network, auth, permissions: all end the same way for the user
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise HubUploadError(f"upload.repo_id={repo_id}: upload failed ({reason}); {where}") from None
    return f"{constants.ENDPOINT}/{repo_id}"
