"""The periodic garbage collection of attachments (every ``attachment_gc_interval`` seconds).

Every process runs it; two sweeps at once are harmless (deleting a deleted row or blob is a
no-op), so no leader is needed.
"""

from __future__ import annotations

import asyncio
import random

import structlog

from parley.attachments.service import AttachmentService

log = structlog.get_logger("parley.attachments")


async def collect_periodically(service: AttachmentService) -> None:
    """Sweep forever (until cancelled); a failed sweep is logged and retried next time."""
    interval = service.settings.attachment_gc_interval
    if interval <= 0:
        return
    while True:
        # Jitter, so the processes of a cluster do not all sweep at the same moment.
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
        try:
            await service.collect_garbage()
        except Exception:
            log.exception("attachment garbage collection failed")
