"""nextup: a todo app's event-driven back end as standalone CloudEvents functions.

Kept import-free on purpose: every function imports ``nextup`` on a cold start, so the
package root must cost nothing. Import the module you need (``nextup.recurrence``,
``nextup.events``, ``nextup.store`` ...).
"""

__version__ = "0.1.0"
