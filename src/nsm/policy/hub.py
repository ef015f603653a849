"""The only Hugging Face Hub calls, each an explicit command: download and push a policy folder.

The token comes from the environment (HF_TOKEN) or `huggingface-cli login`; revisions pin
what a robot runs (`--revision <commit>`). Model files never go into git.
"""
import os
from pathlib import Path

from nsm.errors import NsmError
from nsm.policy.model_dir import PolicyDir


def download(repo_id: str, out: Path, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, revision=revision, local_dir=out))
    except LocalEntryNotFoundError:
        raise NsmError(f"cannot download {repo_id}: the Hugging Face Hub is unreachable (offline?); copy the policy "
                       f"folder to this machine instead") from None
    except HfHubHTTPError as exc:
        raise NsmError(f"cannot download {repo_id}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise NsmError(f"cannot download {repo_id}: {exc}; check the network or copy the policy folder") from None
    PolicyDir(path)  # a download that is not a policy folder is an error now, not at deploy time
    return path


def push(model: Path, repo_id: str, private: bool = True, message: str = "nsm policy push") -> str:
    """Upload the policy folder (LeRobot layout, an ensemble's members/ and its ONNX export; not
    training/ or eval runs).
    Returns the commit the robot can pin with `nsm policy download --revision`."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    PolicyDir(model)  # only a loadable policy goes up
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise NsmError("cannot push: HF_HUB_OFFLINE is set; unset it on a machine with network access")
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=model, repo_id=repo_id, commit_message=message,
                                 ignore_patterns=["training/*", "members/*/training/*", "eval-*/*"])
    except HfHubHTTPError as exc:
        raise NsmError(f"cannot push to {repo_id}: {str(exc).splitlines()[0]} (token: HF_TOKEN or "
                       "`huggingface-cli login`)") from None
    except (OSError, httpx.TransportError) as exc:  # connection refused, DNS, proxy, timeout
        raise NsmError(f"cannot push to {repo_id}: the Hugging Face Hub is unreachable ({exc.__class__.__name__}); "
                       "push from a machine with network access") from None
    return info.oid
