"""The web console of `nextup dev` at `/ui`: what flowed, why it failed, what the store
holds, which function runs, and buttons for the clock, re-drives and test events.

| module | what it holds |
| --- | --- |
| `attempts` | the dispatcher's ring of delivery attempts, read only while a browser is open |
| `timeline` | events and their attempts as causal chains, bounded, filterable; pure |
| `redrive` | choosing dead letters to re-drive and the events to post again; pure |
| `api` | the Starlette routes under `/ui` and the server-sent event stream |
| `screenshots` | a picture of every view into `docs/console/`, with a real browser |

Nothing here runs per event but one `deque.append` in the dispatcher and one in the
ingress: every other cost is paid only while a browser has the console open.
"""
