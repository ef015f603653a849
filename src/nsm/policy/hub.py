"""The one explicit Hugging Face Hub call: downloading a policy directory."""
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
