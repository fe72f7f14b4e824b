"""The complete-task function, served by functions-framework:

functions-framework --source functions/complete-task/main.py --target handle --port 8080
"""

from nextup.functions import COMPLETE_TASK
from nextup.runtime import bind

handle = bind(COMPLETE_TASK)
