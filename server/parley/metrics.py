"""Prometheus metrics, defined once. Exposed at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("parley_open_connections", "Open WebSocket connections on this process.")
CONNECTIONS_TOTAL = Counter("parley_connections_total", "WebSocket connections accepted.")
DISCONNECTS = Counter(
    "parley_disconnects_total", "Connections closed by the server, by close code.", ["code"]
)
SUBSCRIPTIONS = Gauge("parley_subscriptions", "Session subscriptions held on this process.")
FEEDS = Gauge("parley_session_feeds", "Sessions with local subscribers on this process.")
FRAMES_IN = Counter("parley_frames_in_total", "Client frames received, by frame type.", ["type"])
FRAMES_OUT = Counter("parley_frames_out_total", "Frames written to clients.")
FRAME_ERRORS = Counter("parley_frame_errors_total", "Error frames sent, by error code.", ["code"])
EVENTS_PUBLISHED = Counter(
    "parley_events_published_total", "Events published to the broker, by kind.", ["kind"]
)
EVENTS_DELIVERED = Counter(
    "parley_events_delivered_total", "Events fanned out to local subscribers (once per event)."
)
REPLAYS = Counter(
    "parley_replays_total",
    "Resumes with since_seq, by where the missed events came from (memory or storage).",
    ["source"],
)
GAP_FILLS = Counter("parley_gap_fills_total", "Seq gaps filled from storage.")
RESYNCS = Counter(
    "parley_resyncs_total", "Session feeds caught up from storage after a broker interruption."
)
BROKER_RECONNECTS = Counter("parley_broker_reconnects_total", "Broker connections restored.")
BROKER_DROPPED = Counter(
    "parley_broker_dropped_total", "Payloads that could not be published to the broker."
)
FANOUT_LATENCY = Histogram(
    "parley_fanout_latency_seconds",
    "From publish to the event being queued on every local subscriber.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
HTTP_REQUESTS = Counter(
    "parley_http_requests_total",
    "REST requests, by method, route and status.",
    ["method", "route", "status"],
)

# LLM relay (relay/).
RELAY_GENERATIONS = Counter(
    "parley_relay_generations_total",
    "Generations finished (stored), by provider and finish reason.",
    ["provider", "finish_reason"],
)
RELAY_ACTIVE = Gauge("parley_relay_active_generations", "Generations running on this process.")
RELAY_TOKENS = Counter(
    "parley_relay_tokens_total",
    "Tokens of finished generations (reported or estimated), by provider and direction.",
    ["provider", "direction"],
)
RELAY_FIRST_TOKEN = Histogram(
    "parley_relay_first_token_seconds",
    "From the start of a generation to its first token.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
)
RELAY_RETRIES = Counter(
    "parley_relay_retries_total", "Provider calls retried before the first token.", ["kind"]
)
RELAY_DELTAS = Counter("parley_relay_delta_events_total", "Coalesced delta events published.")
RELAY_REAPED = Counter(
    "parley_relay_reaped_total", "Streams of processes that died, stored as interrupted."
)

# Integrations (integrations/): webhooks, live feeds, automation.
WEBHOOK_ATTEMPTS = Counter(
    "parley_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, retry, failed).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "parley_webhook_latency_seconds",
    "Time a webhook receiver took to answer (or fail).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOKS_DISABLED = Counter(
    "parley_webhooks_disabled_total", "Webhook endpoints disabled after repeated failures."
)
FEED_STREAMS = Gauge(
    "parley_feed_streams", "Live tenant feed subscribers (SSE and socket) on this process."
)
AUTOMATION_RUNS = Counter(
    "parley_automation_runs_total", "Automation rule firings, by status.", ["status"]
)

# -- conversation intelligence ---------------------------------------------------------------
ANALYSIS_JOBS = Counter(
    "parley_analysis_jobs_total", "Session analyses run by this process, by outcome.", ["outcome"]
)

# Attachments (attachments/) and GraphQL (gql/).
ATTACHMENT_UPLOADS = Counter(
    "parley_attachment_uploads_total",
    "Attachment uploads, by result (stored, or the error code that refused them).",
    ["result"],
)
ATTACHMENT_BYTES = Counter("parley_attachment_bytes_total", "Bytes of attachments stored.")
ATTACHMENT_COLLECTED = Counter(
    "parley_attachment_collected_total",
    "What garbage collection removed, by kind (attachment rows, blobs).",
    ["kind"],
)
GRAPHQL_QUERIES = Counter(
    "parley_graphql_queries_total",
    "GraphQL requests, by outcome (ok, refused before running, field errors, internal).",
    ["outcome"],
)
# Governance data (governance/, docs/privacy.md).
QUOTA_REFUSALS = Counter(
    "parley_quota_refusals_total", "Requests refused because a tenant quota is used up.", ["quota"]
)
PII_FINDINGS = Counter(
    "parley_pii_findings_total",
    "PII and secrets found in messages, by type and mode.",
    ["type", "mode"],
)
RETENTION_SESSIONS = Counter(
    "parley_retention_sessions_total", "Sessions archived or purged by retention.", ["action"]
)
