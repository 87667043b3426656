# CoffeeBuddy's Vault policy: read the two KV v2 secrets it needs, nothing else. Slack's signing
# secret (the ingress verifies requests with it) and bot token (handlers call Slack's Web API with
# it), both in coffeebuddy/slack, and the PostgreSQL password (the worker, the
# dead-letter Service and the migration Job connect with it). The three Services and the Job share
# one ServiceAccount and so one role and this one policy (docs/deploy.md, "Vault as code"). The
# paths are the KV v2 data paths of VAULT_KV_MOUNT/SLACK_SIGNING_SECRET_VAULT_PATH (and
# SLACK_BOT_TOKEN_VAULT_PATH) and
# VAULT_KV_MOUNT/PG_PASSWORD_VAULT_PATH (knative/settings.env); the tests keep them equal.
path "secret/data/coffeebuddy/slack" {
  capabilities = ["read"]
}

path "secret/data/coffeebuddy/postgres" {
  capabilities = ["read"]
}
