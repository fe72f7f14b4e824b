"""The floor: a CloudEvent function that does nothing, on functions-framework's ASGI server.

    functions-framework --source bench/baselines/floor.py --target handle --port 8080

functions-framework still parses the CloudEvent (binary or structured mode) and answers
200 "OK": what every function on this framework pays before doing any work.
"""

import functions_framework.aio
from cloudevents.http import CloudEvent


@functions_framework.aio.cloud_event
async def handle(event: CloudEvent) -> None:
    return None
