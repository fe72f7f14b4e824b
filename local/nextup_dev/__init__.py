"""`nextup dev`: the whole function set on a laptop, with Knative Kafka Broker semantics.

Read from the same `eventing/` manifests that deploy to Knative (or, without a checkout, the
same manifests rendered from the declarations). One module per job:

| module | what it holds |
| --- | --- |
| `manifests` | the Broker, Triggers, PingSources and KafkaSinks read from `eventing/*.yaml` |
| `filters` | the Trigger filter dialect (`filter.attributes`, `filters`), pure |
| `delivery` | retry, backoff and dead-letter rules of a Trigger's `delivery`, pure |
| `binding` | a CloudEvent as a Kafka record (binary binding) and as an HTTP request |
| `offsets` | which offset of a partition may be committed, pure |
| `schedule` | a PingSource's cron schedule in its time zone, and its tick event |
| `kafka` | the Tansu broker process, topics, client settings |
| `ingress` | the broker ingress: CloudEvents over HTTP into the broker topic |
| `dispatcher` | one consumer group per Trigger: filter, deliver, retry, dead-letter, reply |
| `processes` | child processes: start, wait until ready, restart after a crash, stop |
| `fleet` | the functions as functions-framework processes, scale-to-zero bookkeeping |
| `activator` | the proxy that starts a scaled-to-zero function on its first event |
| `mailbox` | a local SMTP server keeping every message as an `.eml` file |
| `deadletters` | mirrors the dead-letter topic into readable files |
| `status` | what flows, counted per Trigger (the board, `GET /status`), in one vocabulary |
| `terminal` | what a person sees of it: which lines are shown, sampled or only logged, the banner |
| `console` | the web console at `/ui`: timeline, dead letters and re-drive, state, clock |
| `stack` | starts and stops all of the above: the body of `nextup dev` |
| `render` | every file that follows from the function declarations (`eventing/base` too) |
| `generate` | `make generate`: writes what `render` renders, or `--check`s it |

The peers toolkit, shared with the tests and the benchmarks (which may import from here;
nothing here imports from them):

| module | what it holds |
| --- | --- |
| `ports` | `free_port`: the one way to pick a loopback port |
| `processes` | also `Supervised` (a peer a test or benchmark starts and stops), `wait_until` |
| `launcher` | how a function is served (`function_argv`), and `FunctionProcess` |
| `smtp` | `SmtpServer` (under `mailbox` too) and the tests' scriptable `RecordingSmtp` |
| `moto` | moto server speaking DynamoDB, with DynamoDB's atomicity (`MotoServer`), `aws_env` |
| `recorder` | `HttpRecorder`: a real HTTP server recording every request |
| `stores` | the store kinds (`STORE_KINDS`) and a fresh store of each (`store_url`) |

Nothing under `nextup_dev` is imported by the functions themselves: a function's cold
start never pays for aiokafka, aiosmtpd or YAML.
"""
