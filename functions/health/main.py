"""The health function, served by functions-framework:

functions-framework --source functions/health/main.py --target handle --port 8080
"""

from nextup.functions import HEALTH
from nextup.runtime import bind

handle = bind(HEALTH)
