"""Checking a model reference before anything loads: a local checkpoint directory, or a Hugging Face Hub id that is
cached or can be downloaded.

Without this check a typo of a local folder is sent to the Hub as an id, and an unreachable Hub makes
huggingface_hub retry each request with backoff ("Retrying in 8s [Retry 4/5]", 43-127 s on a machine without
network) before an error that names neither the offline tiny model nor `--model DIR`. Here the answer comes in one
line, from one short probe of the Hub (at most PROBE_SECONDS) or none at all.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from aqa.errors import ModelError

logger = logging.getLogger(__name__)

# Seconds the reachability probe may take: a connection that does not answer in this long is taken as no network
# (the Hub answers a HEAD in well under a second where it is reachable at all).
PROBE_SECONDS = 3.0
# What to do instead, named in every refusal.
INSTEAD = "build the offline tiny model with `aqa tiny DIR` and pass `--model DIR` (or a checkpoint folder you have)"


def is_hub_id(name: str) -> bool:
    """Whether `name` is a Hub model id of the form `owner/name` (what every Qwen2-Audio checkpoint has)."""
    if name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache ($HF_HOME, $HF_HUB_CACHE) holds this model's config."""
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_SECONDS) -> bool:
    """One HEAD request to the Hub, no retries: any HTTP answer (even an error status) means it is reachable.

    The standard library's client honours the usual proxy variables (HTTPS_PROXY ...), as huggingface_hub does."""
    try:
        request = urllib.request.Request(endpoint or constants.ENDPOINT, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):  # no route, no DNS, refused, timed out, TLS failure; a malformed HF_ENDPOINT
        return False


def check_model_reference(name_or_path: str | Path) -> None:
    """Refuse, in one line, a model that cannot load: a path that is not a directory and not an `owner/name` id, or
    a Hub id that is not cached while the Hub is unreachable or HF_HUB_OFFLINE is set.

    A cached model with the Hub unreachable is loaded from the cache: huggingface_hub is switched to offline mode for
    this process, so that no request is retried first."""
    name = str(name_or_path)
    if Path(name).expanduser().is_dir():
        return
    if not is_hub_id(name):
        raise ModelError(f"{name}: no such model directory")
    cached = is_cached(name)
    if constants.is_offline_mode():
        if not cached:
            raise ModelError(
                f"{name}: not a model directory and not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: "
                f"{INSTEAD}, or unset HF_HUB_OFFLINE to download it"
            )
        return
    if hub_reachable():
        return
    if not cached:
        raise ModelError(
            f"{name}: not a model directory and not in the local Hugging Face cache, and the Hub "
            f"({constants.ENDPOINT}) cannot be reached: {INSTEAD}; HF_HUB_OFFLINE=1 skips this check"
        )
    constants.HF_HUB_OFFLINE = True  # read by huggingface_hub (and so transformers) at every request
    logger.warning("the Hub (%s) cannot be reached: loading %s from the local cache", constants.ENDPOINT, name)
