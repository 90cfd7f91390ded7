"""`vllm-extract models prepare` and `vllm-extract config show`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..exceptions import ConfigurationError, VLLMClientError
from ._app import ConfigOpt, _fail, _settings, _setup_logging, config_app, err, models_app


@models_app.command("prepare")
def models_prepare(
    name: Annotated[str, typer.Argument(help="The model to prepare: tiny.")] = "tiny",
) -> None:
    """Prepare the embedded tiny model (offline, checksummed, idempotent) and print its folder.

    Example: vllm-extract models prepare tiny
    """
    _setup_logging(False, False)
    from ..engine.models import TINY_MODEL, prepare_tiny_model

    try:
        if name != TINY_MODEL:
            raise ConfigurationError(f"only {TINY_MODEL!r} can be prepared, not {name!r}")
        prepared = prepare_tiny_model()
    except VLLMClientError as exc:
        raise _fail(exc) from None
    status = "prepared" if prepared.created else "already prepared"
    err.print(f"tiny model {status}: {prepared.path}", highlight=False)
    sys.stdout.write(f"{prepared.path}\n")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (defaults < file < VLLM_EXTRACT_* env).

    Example: VLLM_EXTRACT_CHUNK_TOKENS=8000 vllm-extract config show
    """
    import orjson

    try:
        settings = _settings(config)
    except VLLMClientError as exc:
        raise _fail(exc) from None
    data = settings.as_dict()
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for key, value in data.items():
        if key == "entity_types":
            value = ",".join(t["name"] for t in value)
        sys.stdout.write(f"{key} = {value}\n")
