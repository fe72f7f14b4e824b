"""The schedule-next function, served by functions-framework:

functions-framework --source functions/schedule-next/main.py --target handle --port 8080
"""

from nextup.functions import SCHEDULE_NEXT
from nextup.runtime import bind

handle = bind(SCHEDULE_NEXT)
