"""Any declared function as a functions-framework source, picked by `NEXTUP_FUNCTION`:

    NEXTUP_FUNCTION=complete-task functions-framework \
        --source "$(python -c 'import nextup.serve as m; print(m.__file__)')" --target handle

It ships inside the installed package, so a function runs without a checkout (`nextup dev`
starts its functions this way); `functions/<name>/main.py` does the same for one function
in its image.
"""

import os

from nextup.functions import ALL
from nextup.runtime import bind

_name = os.environ.get("NEXTUP_FUNCTION", "")
if _name not in ALL:
    raise RuntimeError(f"NEXTUP_FUNCTION must name a function ({', '.join(ALL)}), not {_name!r}")

handle = bind(ALL[_name])
