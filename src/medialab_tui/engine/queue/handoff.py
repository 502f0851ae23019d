"""The host's side of `medialab run` on a warm host: a pipeline handed over to validate
and submit (`engine.daemon.ask_submit`), answered with the run or the input error.

The client sends the file's text, the name it was given by and the folder its
relative paths start from; the host validates, resolves and submits exactly as the
client would have (`prepare`, then `submit`), so the same file gives the same run or
the same sentence either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medialab_tui.config import DataDir
from medialab_tui.engine.pipeline import parse_pipeline
from medialab_tui.engine.queue.requests import submit
from medialab_tui.engine.queue.resolve import prepare
from medialab_tui.errors import InputError, MedialabError
from medialab_tui.store.db import Store
from medialab_tui.text import visible
from medialab_tui.tomlfile import parse_toml

log = logging.getLogger(__name__)


def submit_asked(store: Store, data: DataDir, request: dict[str, Any]) -> dict[str, Any]:
    """Validate and submit one handed-over pipeline; the reply for its client.

    `{"run_id", "ref", "name"}` when it went in; `{"error": …}` for an input error
    (nothing stored); `{"large": true}` for a run that needs the operator's yes
    (the client asks, then submits it itself); `{"local": true}` when the host could
    not handle the request, so the client does it the usual way and reports.
    """
    try:
        source = str(request["source"])
        text = str(request["text"])
        base = Path(str(request["base"]))
        stem = str(request.get("stem") or Path(source).stem)
    except KeyError:
        return {"local": True}
    try:
        pipeline = parse_pipeline(parse_toml(text, source), source, default_name=stem)
        prepared = prepare(store, pipeline, source, base)
        if prepared.large and not request.get("yes"):
            return {"large": True}
        run = submit(store, data, prepared)
    except InputError as exc:
        log.info(
            "refused a handed-over run from pid %s: %s", request.get("pid"), visible(exc.sentence)
        )
        return {"error": exc.to_dict()}
    except MedialabError as exc:
        log.info("a handed-over run from pid %s failed: %s", request.get("pid"), visible(str(exc)))
        return {"failed": str(exc), "exit": exc.exit_code}
    except Exception:
        log.exception("a handed-over run from pid %s could not be submitted", request.get("pid"))
        return {"local": True}
    log.info("submitted run %s for pid %s", run.ref, request.get("pid"))
    return {"run_id": run.id, "ref": run.ref, "name": run.name}
