"""`pacsflow serve`: one node's DICOM, HL7 MLLP and HTTP listeners and its job workers."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import typer

from pacsflow.cli import _common
from pacsflow.cli._common import ConfigOption


def serve(config: ConfigOption = None) -> None:
    """Run the DICOM, HL7 MLLP and HTTP listeners until interrupted (Ctrl-C or SIGTERM).

    Upgrades an empty or older database first. Defaults: DICOM AE PACSFLOW on port
    11112, HL7 MLLP on 2575, HTTP on 8080, all on 127.0.0.1; data in ./pacsflow-data.
    """
    from pacsflow.app import Pacsflow

    settings = _common.settings(config)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    node = Pacsflow(settings)
    try:
        node.start()
    except OSError as exc:
        node.stop()
        typer.secho(
            f"cannot start: {exc}. Is another pacsflow (or another service) using the port? "
            "Change it with PACSFLOW_DICOM_PORT / PACSFLOW_HL7_PORT / PACSFLOW_HTTP_PORT.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from exc

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("pacsflow").info("signal %d: stopping", signum)
        node.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    typer.echo(
        f"pacsflow is running: DICOM {settings.ae_title}@{settings.host}:{node.dicom.port}, "
        f"HL7 MLLP {settings.host}:{node.hl7.port}, HTTP http://{settings.host}:{node.http.port}"
        " (Ctrl-C stops)",
        err=True,
    )
    node.wait()


__all__ = ["serve"]
