"""The send-reminder function, served by functions-framework:

functions-framework --source functions/send-reminder/main.py --target handle --port 8080
"""

from nextup.functions import SEND_REMINDER
from nextup.runtime import bind

handle = bind(SEND_REMINDER)
