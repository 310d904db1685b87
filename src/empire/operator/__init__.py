"""The Kubernetes operator for EmpireConfig: the CR `spec` is the policy; the state DB is the hand-off.

Pure parts: `crd` (the CRD generated from the policy schema), `spec` (CR -> validated policy, which
config is in force), `status` (conditions, Events), `rbac` (does a Role allow a call?). Adapters:
`handoff` (state DB writes and the agent-side `DbPolicySource`), `secrets` (the reader for
`{secret: ...}` references), `handlers` (kopf), `runner` (kopf run, peering), `testing` (kmock
harness). kopf is imported only by `handlers`/`runner`/`testing`, so the agent can use
`DbPolicySource` and the Secret reader without the operator extra.
"""
