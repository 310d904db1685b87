"""The agent's versioned HTTP API (/v1): tokens and scopes (`auth`), the gate in front of every
request (`guard`: authentication, per-caller rate, audit of writes), endpoint declarations and the
OpenAPI document written from them (`spec`), and the core's own endpoints (`core`). The areas
declare theirs (`pools.api`, `tiering.api`, `alerting.api`).

Nothing is re-exported here: import from the submodule (importing `auth` loads no web library)."""
