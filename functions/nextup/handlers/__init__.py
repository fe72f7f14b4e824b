"""What each function does with an event: orchestration of the pure core and the adapters.

One module per function; `nextup.functions` binds them to the runtime.
"""
